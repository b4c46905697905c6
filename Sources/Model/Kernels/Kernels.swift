import Numerics

/// The kernels of the transformer blocks, each forward beside its backward (llm.c style), over flat
/// row-major buffers with their dimensions named once. Inference (`BertModel`, `LlamaModel`) and the
/// differentiable models of training (`DifferentiableBert`, `DifferentiableLlama`) call the same
/// functions, so a forward pass is written once; what a backward needs is what its forward can keep
/// (the optional outputs). Row-wise kernels split their rows over `Parallel`'s threads (rows are
/// independent, so the result does not depend on the split). One file per family of operation beside this one:
/// Norms, RoPE, Activations, Attention (padded batches), PackedAttention, Losses. See Docs/architecture.md.
public enum Kernels {}
