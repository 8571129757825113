"""Milvus, the vector store: the gateway (the only code that speaks to Milvus), what a collection
stores, versions behind an alias and the re-index marks, and hybrid search's rank fusion.

The API imports this package too, so nothing in it imports torch."""
