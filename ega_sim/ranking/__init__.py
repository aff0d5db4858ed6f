"""The cascade's learned ranking: observable features, the position-aware pCTR model, training."""
