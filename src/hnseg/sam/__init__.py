"""LiteMedSAM: model, official checkpoint, inference and fine-tuning (DESIGN.md sections 3.7, 3.8, 5)."""
