"""Billing: fee computation from the published schedule, the ledger, invoices and reports."""
