"""One cell's training, framework-free: loaders, the epoch loop, objectives, metrics, the TF-IDF baseline."""
