"""Training: the split (splits.py), head mode (head_mode.py), full fine-tuning (finetune.py), the
evaluation (evaluate.py) and the run itself (service.py)."""
