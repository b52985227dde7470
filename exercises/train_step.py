"""Exercise train_step — one optimizer step of linnet's training loop (lesson: 05_train.py, section 3,
train_step). About 20 lines.

A step of linnet reads more tokens than fit in memory at once (524,288 tokens = 16 micro-batches of
32 × 1024 on one GPU), so it runs several forward/backward passes and steps the optimizers once:

1. Gradient accumulation. For each of the n micro-batches (x, y): loss = model(x, y)[1] (02's LLM returns
   (logits, loss)); backward. PyTorch ADDS gradients across backward calls, and the step must use the
   gradient of the MEAN loss over the n micro-batches — so that 2 micro-batches of B rows give the same
   step as 1 of 2B rows. Decide what to call backward on so that this holds.
2. Report the mean of the n losses (detached: no graph kept) as the step's loss.
3. Global-norm clipping: the norm of ALL gradients together, ‖g‖ = √(Σ over every parameter and every
   element of g²). If ‖g‖ > grad_clip, every gradient is multiplied by the same factor so that the norm
   becomes grad_clip; torch's rule, which 05 uses, is factor = min(1, grad_clip / (‖g‖ + 1e-6)). Return
   ‖g‖ as it was BEFORE clipping (that is what the training log plots). Write this yourself: the check
   refuses torch's clip_grad_norm_ here.
4. Step every optimizer in `optimizers` (03's Muon for the matrices and AdamW for the rest), then clear
   all gradients (set them to None or zero) so that the next step does not add onto this one.

Return (mean loss, grad norm before clipping), both one-element float tensors.

Shapes: model is 02's LLM in training mode; optimizers a list; batches a list of (x, y) pairs of (b, t)
int64 token tensors; grad_clip a float (linnet: 1.0) → (loss, grad_norm).

Check:     python -m exercises.check train_step   (steps a copy of the same model with 05's train_step
           and compares loss, grad norm and every parameter after each of a few steps)
Solution:  exercises/solutions/train_step.py
"""
from __future__ import annotations

import torch


def train_step(model, optimizers, batches, grad_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over the micro-batches `batches`: returns (mean loss, grad norm before clipping)."""
    raise NotImplementedError("TODO in exercises/train_step.py: accumulate, clip, step, clear (1-4 in the "
                              "docstring)")
