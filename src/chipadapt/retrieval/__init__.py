"""Domain-adapted retrieval: passages, synthetic training data, bi-encoder, indexes, RAG prompts."""
