"""The Paimon lakehouse: catalog access, table definitions, queries, maintenance, reconciliation."""
