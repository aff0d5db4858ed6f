"""The EGA-V2 generative allocator, one module per paper component (work in progress: so far
the RQ-VAE tokenizer that turns item embeddings into semantic IDs)."""
