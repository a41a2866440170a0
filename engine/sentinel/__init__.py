"""Finding and handling the bad batches of a run: the samples whose loss is not finite."""
