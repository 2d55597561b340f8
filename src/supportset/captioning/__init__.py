"""Video captioning: generation with the trained decoder, COCO caption metrics, tables."""
