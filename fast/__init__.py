"""fast — not a lesson: the fast twins. Each file speeds up one thing a lesson writes plainly, and must give
what the plain twin gives (a test in tests/ says they agree). Each opens with what it speeds up, the plain
twin it must equal, and where its measured gain is written (BENCHMARKS.md). A lesson chooses between the
two with an ordinary config field or keyword (`LLMConfig.moe_impl`, `rope_impl`, `loss_impl`); `fast` never
imports a lesson: it takes tensors, dicts and callables."""
