import Checkpoint
import Numerics

/// A linear layer y = x Wᵀ + b with an optional adapter in the forward pass, unmerged:
/// LoRA / rsLoRA: y += s·(x Aᵀ) Bᵀ (+ s·b_B with lora_bias); DoRA as PEFT:
/// y = b + (m / ||W + sBA||_row) ⊙ (x Wᵀ + s·x Aᵀ Bᵀ); HiRA: W_eff = W ⊙ (1 + s·B·A).
/// `active = false` gives exactly the base layer.
public final class AdaptedLinear {
    public typealias Variant = AdapterVariant

    public let name: String
    public let inFeatures: Int
    public let outFeatures: Int
    /// [out, in] row-major: Float32 or, loaded from a bf16/f16 checkpoint, the file's bytes in place.
    public var weight: WeightMatrix
    public var bias: [Float]?

    // Adapter (nil: none attached).
    public package(set) var a: [Float]? = nil  // [r, in]
    public package(set) var b: [Float]? = nil  // [out, r]
    public package(set) var rank = 0
    public package(set) var scaling: Float = 0
    public package(set) var loraBias: [Float]? = nil
    public package(set) var magnitude: [Float]? = nil
    public package(set) var variant: Variant = .lora
    /// Off: exactly the base layer (CoTo's stochastic activation, layer pruning, Shapley evaluation).
    public var active = true
    /// When set, every forward adds XᵀX of its input rows to it (RegMean's activation Grams).
    public var inputGram: GramAccumulator? = nil

    package var doraScale: [Float]? = nil  // m / ||W + sBA||_row, cached
    package var hiraWeight: [Float]? = nil  // W ⊙ (1 + s·BA), cached

    public convenience init(name: String, weight: [Float], bias: [Float]?, out: Int, in inF: Int) {
        self.init(name: name, matrix: WeightMatrix(weight, rows: out, cols: inF), bias: bias)
    }

    public init(name: String, matrix: WeightMatrix, bias: [Float]?) {
        let (out, inF) = (matrix.rows, matrix.cols)
        self.name = name
        self.weight = matrix
        self.bias = bias
        self.outFeatures = out
        self.inFeatures = inF
    }

    public var hasAdapter: Bool { a != nil }

    /// The frozen weight and bias as tensors (a head's copy).
    public var weightTensors: (Tensor, Tensor?) {
        (Tensor(shape: [outFeatures, inFeatures], data: weight.toArray()), bias.map { Tensor(shape: [outFeatures], data: $0) })
    }

    /// A classification head [labels, hidden] (+ bias [labels]) from tensors a file supplied, shapes checked.
    public static func head(name: String, weight: Tensor, bias: Tensor?, hidden: Int) throws -> AdaptedLinear {
        guard weight.rank == 2, weight.cols == hidden, weight.rows > 0 else {
            throw ModelError(name, "head weight \(weight.shape) does not take hidden size \(hidden)")
        }
        if let b = bias, b.count != weight.rows {
            throw ModelError(name, "head bias \(b.shape) does not match the \(weight.rows) outputs of its weight")
        }
        return AdaptedLinear(name: name, weight: weight.data, bias: bias?.data, out: weight.rows, in: hidden)
    }

    /// Attaches a LoRA module (shapes checked by the caller's loader).
    public func attach(_ m: LoraModule, variant v: Variant) throws {
        guard m.a.tensor.shape == [m.rank, inFeatures], m.b.tensor.shape == [outFeatures, m.rank] else {
            throw ModelError(
                name, "adapter module '\(m.name)' has lora_A \(m.a.tensor.shape) / lora_B \(m.b.tensor.shape), the layer is \(outFeatures)x\(inFeatures)")
        }
        if v == .hira && !m.isDora && m.bias != nil {
            throw ModelError(name, "adapter module '\(m.name)' has a lora_B.bias: HiRA has no rule for it")
        }
        a = m.a.tensor.data
        b = m.b.tensor.data
        rank = m.rank
        scaling = Float(m.scaling)
        loraBias = m.bias?.tensor.data
        magnitude = m.magnitude?.tensor.data
        // DoRA exactly when the module has a magnitude vector; otherwise the adapter's LoRA or HiRA.
        variant = m.isDora ? .dora : (v == .hira ? .hira : .lora)
        doraScale = nil
        hiraWeight = nil
        if variant == .dora { computeDoraScale() }
        if variant == .hira { computeHira() }
    }

    /// Recomputes what depends on the adapter's parameters (DoRA norms, HiRA weight) after an update.
    package func refresh() {
        if variant == .dora { computeDoraScale() }
        if variant == .hira { computeHira() }
    }

    /// Installs fresh trainable parameters (training from scratch).
    package func install(a: [Float], b: [Float], rank: Int, scaling: Float, magnitude: [Float]?, variant: Variant) {
        self.a = a
        self.b = b
        self.rank = rank
        self.scaling = scaling
        self.magnitude = magnitude
        self.variant = variant
        loraBias = nil
        refresh()
    }

    public func detach() {
        a = nil
        b = nil
        rank = 0
        loraBias = nil
        magnitude = nil
        doraScale = nil
        hiraWeight = nil
    }

    package func deltaBA() -> [Float] {
        var d = [Float](repeating: 0, count: outFeatures * inFeatures)
        guard let a, let b else { return d }
        b.withUnsafeBufferPointer { pb in
            a.withUnsafeBufferPointer { pa in
                d.withUnsafeMutableBufferPointer { pd in
                    BLAS.sgemm(
                        transA: false, transB: false, m: outFeatures, n: inFeatures, k: rank,
                        a: pb.baseAddress!, lda: rank, b: pa.baseAddress!, ldb: inFeatures, c: pd.baseAddress!, ldc: inFeatures)
                }
            }
        }
        return d
    }

    func computeDoraScale() {
        guard let m = magnitude else { return }
        let d = deltaBA()
        var scale = [Float](repeating: 0, count: outFeatures)
        var row = [Float](repeating: 0, count: inFeatures)
        for o in 0..<outFeatures {
            var ss = 0.0
            row.withUnsafeMutableBufferPointer { weight.row(o, into: $0.baseAddress!) }
            for i in 0..<inFeatures {
                let v = Double(row[i]) + Double(scaling) * Double(d[o * inFeatures + i])
                ss += v * v
            }
            scale[o] = m[o] / Float(ss.squareRoot())
        }
        doraScale = scale
    }

    func computeHira() {
        let d = deltaBA()
        var w = weight.toArray()
        for i in w.indices { w[i] *= 1 + scaling * d[i] }
        hiraWeight = w
    }

    /// y [rows, out] = forward(x [rows, in]) on `Parallel.threads` (the base product as `WeightMatrix`
    /// splits it; the adapter's rows split across threads).
    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        inputGram?.add(x, rows: rows)
        let useAdapter = active && a != nil
        let (inF, outF, r) = (inFeatures, outFeatures, rank)
        var beta: Float = 0
        if let bias, !(useAdapter && doraScale != nil) {
            // The bias is folded into the GEMM: y starts as the bias rows, beta = 1.
            bias.withUnsafeBufferPointer { pb in
                for i in 0..<rows { (y + i * outF).update(from: pb.baseAddress!, count: outF) }
            }
            beta = 1
        }
        if useAdapter && variant == .hira, let hira = hiraWeight {
            hira.withUnsafeBufferPointer { pw in
                Parallel.forEach(rows, minChunk: 8) { range in
                    BLAS.sgemm(
                        transA: false, transB: true, m: range.count, n: outF, k: inF, a: x + range.lowerBound * inF, lda: inF,
                        b: pw.baseAddress!, ldb: inF, beta: beta, c: y + range.lowerBound * outF, ldc: outF)
                }
            }
            return
        }
        weight.multiplyTransposed(x, rows: rows, into: y, beta: beta)
        guard useAdapter, let a, let b else { return }
        let (bias, doraScale, loraBias, scaling) = (self.bias, self.doraScale, self.loraBias, self.scaling)
        Parallel.forEach(rows, minChunk: 8) { range in
            let xs = x + range.lowerBound * inF
            let ys = y + range.lowerBound * outF
            let n = range.count
            var scratch = [Float](repeating: 0, count: n * r)
            scratch.withUnsafeMutableBufferPointer { ps in
                a.withUnsafeBufferPointer { pa in
                    BLAS.sgemm(
                        transA: false, transB: true, m: n, n: r, k: inF, a: xs, lda: inF, b: pa.baseAddress!, ldb: inF, c: ps.baseAddress!, ldc: r)
                }
                b.withUnsafeBufferPointer { pb in
                    BLAS.sgemm(
                        transA: false, transB: true, m: n, n: outF, k: r, alpha: scaling, a: ps.baseAddress!, lda: r,
                        b: pb.baseAddress!, ldb: r, beta: 1, c: ys, ldc: outF)
                }
            }
            if let s = doraScale {
                s.withUnsafeBufferPointer { ps in for i in 0..<n { for o in 0..<outF { ys[i * outF + o] *= ps[o] } } }
            }
            if let lb = loraBias {
                lb.withUnsafeBufferPointer { pl in for i in 0..<n { for o in 0..<outF { ys[i * outF + o] += scaling * pl[o] } } }
            }
            if let bias, doraScale != nil {
                bias.withUnsafeBufferPointer { pb in for i in 0..<n { for o in 0..<outF { ys[i * outF + o] += pb[o] } } }
            }
        }
    }
}

/// An embedding table with an optional LoRA (PEFT: E[ids] + s·(Aᵀ[ids]) Bᵀ).
public final class AdaptedEmbedding {
    public let name: String
    public let vocab: Int
    public let dim: Int
    /// [vocab, dim]: Float32 or the file's bf16/f16 bytes in place.
    public let table: WeightMatrix
    package var a: [Float]? = nil  // [r, vocab]
    var b: [Float]? = nil  // [dim, r]
    var rank = 0
    var scaling: Float = 0
    public var active = true

    public convenience init(name: String, table: [Float], vocab: Int, dim: Int) {
        self.init(name: name, table: WeightMatrix(table, rows: vocab, cols: dim))
    }

    public init(name: String, table: WeightMatrix) {
        let (vocab, dim) = (table.rows, table.cols)
        self.name = name
        self.table = table
        self.vocab = vocab
        self.dim = dim
    }

    public func attach(_ m: LoraModule) throws {
        guard m.a.tensor.shape == [m.rank, vocab], m.b.tensor.shape == [dim, m.rank] else {
            throw ModelError(
                name, "embedding adapter '\(m.name)' has lora_embedding_A \(m.a.tensor.shape) / B \(m.b.tensor.shape), the table is \(vocab)x\(dim)")
        }
        a = m.a.tensor.data
        b = m.b.tensor.data
        rank = m.rank
        scaling = Float(m.scaling)
    }

    /// out[t] = E[id_t] (+ adapter); ids must be in range (checked by the caller).
    public func forward(_ ids: [Int], into out: UnsafeMutablePointer<Float>) {
        for (t, id) in ids.enumerated() {
            table.row(id, into: out + t * dim)
            if active, let a, let b {
                for j in 0..<dim {
                    var s: Float = 0
                    for k in 0..<rank { s += a[k * vocab + id] * b[j * rank + k] }
                    out[t * dim + j] += scaling * s
                }
            }
        }
    }
}
