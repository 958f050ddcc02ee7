"""amc.model: the branched encoder, its front end, training, the synthetic corpus and neural-diff training."""
