"""File formats: images, detection JSON, WIDER txt, ground truth, device npz files."""
