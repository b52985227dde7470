"""Exercise model_forward — the whole model from its parts (lesson: 02_model.py, section 6, Block and
LLM.forward / LLM.hidden). About 25 lines.

linnet is: token embedding → n_layer blocks → a final RMSNorm → the head, and the head is TIED to the
embedding (one (V, C) matrix wte used twice). You get the parts and return what LLM.forward returns.

    idx         (B, T) token ids
    wte         (V, C) the embedding matrix, row v = the vector of token v; also the head's weight
    blocks      one dict per layer: "ln1", "ln2" (C,) RMSNorm weights, and two functions of 02's block,
                "attn"(x (B, T, C)) → (B, T, C)  and  "moe"(x (B, T, C)) → (y (B, T, C), balance 0-dim)
    ln_f_weight (C,) the final RMSNorm's weight

1. x = the embedding rows of idx                                       (B, T, C)
2. every block is PRE-norm with residuals (the norm is applied to the branch's input, never to x):
       x = x + attn(rmsnorm(x, ln1))
       y, balance = moe(rmsnorm(x, ln2));  x = x + y
   rmsnorm(x, w) = x / sqrt(mean(x², last dim) + 1e-6) · w   (your rms_cross_entropy exercise)
3. x = rmsnorm(x, ln_f_weight); logits = x · wteᵀ                      (B, T, V)
4. loss: None without targets; else the cross-entropy of logits against targets (B, T), ignoring
   targets == −1 (F.cross_entropy(..., ignore_index=-1) is fine here). In TRAINING mode (training=True)
   add balance_coef × the MEAN over the layers of their balance losses (it keeps the router from sending
   everything to one expert); in eval mode the loss is the cross-entropy alone.
Return (logits, loss).

Check:     python -m exercises.check model_forward   (compares with 02's LLM(idx, targets) on small models)
Solution:  exercises/solutions/model_forward.py
"""
from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: F401 — F.cross_entropy is allowed here


def llm_forward(idx: torch.Tensor, wte: torch.Tensor, blocks: list[dict], ln_f_weight: torch.Tensor,
                targets: torch.Tensor | None = None, training: bool = False, balance_coef: float = 0.01):
    """(logits (B, T, V), loss or None) of linnet from its parts: embedding → pre-norm blocks → norm → tied head."""
    raise NotImplementedError("TODO in exercises/model_forward.py: embed idx with wte, run the pre-norm residual "
                              "blocks, the final RMSNorm, the tied head x @ wte.T, then the loss")
