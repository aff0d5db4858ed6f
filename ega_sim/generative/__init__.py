"""The EGA-V2 generative allocator, one module per paper component: RQ-VAE tokenizers
(tokenizer.py, items.py), the generator with its multi-token-prediction creative head
(generator.py), the permutation-aware reward model (reward_model.py), token-level bidding
(token_bidding.py) inside beam search (beam_search.py), the `ega` and `gr` allocators
(allocator.py), and their training stages (pretrain.py, reward_model_train.py, alignment.py,
train.py)."""
