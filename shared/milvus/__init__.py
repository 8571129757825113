"""Milvus, the vector store: the gateway (VectorStore, the only code that speaks to Milvus, in
layers: connection, collections, versions behind an alias, then the assets in gateway.py),
each tenant's view of it (tenants), its errors, records and filters, what a collection
stores (schema), the re-index and write marks, and hybrid search's rank fusion.

The API imports this package too, so nothing in it imports torch."""
