"""Vision: backbones, preprocessing, embeddings, training, model registry, the engine."""
