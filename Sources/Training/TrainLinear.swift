import Model
import Numerics

/// An adapted linear layer in training: forward keeps what its backward needs (llm.c style pair).
/// y = x Wᵀ + b + s·(drop(x) Aᵀ) Bᵀ  (LoRA / rsLoRA)
/// y = b + m/‖W + sBA‖_row ⊙ (x Wᵀ + s·drop(x) Aᵀ Bᵀ)   (DoRA, norm detached as PEFT)
/// y = x (W ⊙ (1 + s·BA))ᵀ + b   (HiRA)
/// W is frozen; A, B (and m) are trainable when the layer has an adapter.
final class TrainLinear {
    let lin: AdaptedLinear
    let name: String
    var group = 0
    var pA: Param? = nil, pB: Param? = nil, pM: Param? = nil
    var dropout: Float = 0
    // Saved by forward.
    var x: [Float] = [], xd: [Float] = [], u: [Float] = [], inner: [Float] = [], dropMask: [Float] = [], rows = 0, usedAdapter = false
    /// Seconds spent in the adapter's own work (its products, dropout, DoRA/HiRA extras), for the time breakdown.
    var adapterSeconds = 0.0

    init(_ lin: AdaptedLinear, name: String) {
        self.lin = lin
        self.name = name
    }

    var trainable: Bool { pA != nil }

    /// A second worker's view of this layer: the same frozen and adapter weights (`lin`), its own saved
    /// activations and its own gradient buffers (values are never read from them).
    func replica() -> TrainLinear {
        let r = TrainLinear(lin, name: name)
        r.group = group
        r.dropout = dropout
        r.pA = pA.map { Param(name: $0.name, value: $0.value) }
        r.pB = pB.map { Param(name: $0.name, value: $0.value) }
        r.pM = pM.map { Param(name: $0.name, value: $0.value) }
        return r
    }

    /// Adds this layer's gradients into `main`'s and clears them.
    func moveGradients(into main: TrainLinear) {
        for (mine, theirs) in [(pA, main.pA), (pB, main.pB), (pM, main.pM)] {
            guard let mine, let theirs else { continue }
            for i in mine.grad.indices { theirs.grad[i] += mine.grad[i] }
            mine.zeroGrad()
        }
    }
    var inF: Int { lin.inFeatures }
    var outF: Int { lin.outFeatures }

    /// Copies the Params' values into the layer (after an optimizer step) and refreshes DoRA/HiRA caches.
    func sync() {
        guard let pA, let pB else { return }
        lin.install(a: pA.value, b: pB.value, rank: lin.rank, scaling: lin.scaling, magnitude: pM?.value, variant: lin.variant)
    }

    func forward(_ x: [Float], rows n: Int, train: Bool, rng: inout SeededRNG) -> [Float] {
        self.x = x
        rows = n
        usedAdapter = lin.active && lin.hasAdapter
        var y = [Float](repeating: 0, count: n * outF)
        guard usedAdapter, lin.variant != .hira else {
            x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { py in lin.forward(px.baseAddress!, rows: n, into: py.baseAddress!) } }
            return y
        }
        // LoRA / DoRA: compute pieces explicitly so backward has them.
        let r = lin.rank
        let s = lin.scaling
        inner = [Float](repeating: 0, count: n * outF)
        x.withUnsafeBufferPointer { px in
            inner.withUnsafeMutableBufferPointer { pi in lin.weight.multiplyTransposed(px.baseAddress!, rows: n, into: pi.baseAddress!) }
        }
        let t0 = Clock.now()
        defer { adapterSeconds += Clock.now() - t0 }
        xd = x
        dropMask = []
        if train && dropout > 0 {
            dropMask = Dropout.mask(x.count, p: dropout, rng: &rng)
            for i in xd.indices { xd[i] *= dropMask[i] }
        }
        u = [Float](repeating: 0, count: n * r)
        xd.withUnsafeBufferPointer { px in
            lin.a!.withUnsafeBufferPointer { pa in
                u.withUnsafeMutableBufferPointer { pu in
                    BLAS.sgemm(
                        transA: false, transB: true, m: n, n: r, k: inF, a: px.baseAddress!, lda: inF, b: pa.baseAddress!, ldb: inF, c: pu.baseAddress!, ldc: r)
                }
            }
        }
        u.withUnsafeBufferPointer { pu in
            lin.b!.withUnsafeBufferPointer { pb in
                inner.withUnsafeMutableBufferPointer { pi in
                    BLAS.sgemm(
                        transA: false, transB: true, m: n, n: outF, k: r, alpha: s, a: pu.baseAddress!, lda: r, b: pb.baseAddress!, ldb: r, beta: 1,
                        c: pi.baseAddress!, ldc: outF)
                }
            }
        }
        if let scale = lin.doraScale {
            for i in 0..<n { for o in 0..<outF { y[i * outF + o] = scale[o] * inner[i * outF + o] } }
        } else {
            y = inner
        }
        if let bias = lin.bias { for i in 0..<n { for o in 0..<outF { y[i * outF + o] += bias[o] } } }
        return y
    }

    /// Accumulates parameter gradients; returns dx when asked.
    func backward(_ dy: [Float], needDx: Bool) -> [Float]? {
        let n = rows
        var dx: [Float]? = needDx ? [Float](repeating: 0, count: n * inF) : nil
        if usedAdapter && lin.variant == .hira, let pA, let pB, let a = lin.a, let b = lin.b, let weff = lin.hiraWeight {
            // dW_eff = dyᵀ x; d(BA) = s·(dW_eff ⊙ W); dB = d(BA) Aᵀ; dA = Bᵀ d(BA); dx = dy W_eff.
            let t0 = Clock.now()
            let r = lin.rank
            var dW = [Float](repeating: 0, count: outF * inF)
            dy.withUnsafeBufferPointer { pdy in
                x.withUnsafeBufferPointer { px in
                    dW.withUnsafeMutableBufferPointer { pw in
                        BLAS.sgemm(
                            transA: true, transB: false, m: outF, n: inF, k: n, a: pdy.baseAddress!, lda: outF, b: px.baseAddress!, ldb: inF,
                            c: pw.baseAddress!, ldc: inF)
                    }
                }
            }
            let s = lin.scaling
            lin.weight.withFloat32 { w in for i in dW.indices { dW[i] *= s * w[i] } }
            dW.withUnsafeBufferPointer { pd in
                a.withUnsafeBufferPointer { pa in
                    pB.grad.withUnsafeMutableBufferPointer { pg in
                        BLAS.sgemm(
                            transA: false, transB: true, m: outF, n: r, k: inF, a: pd.baseAddress!, lda: inF, b: pa.baseAddress!, ldb: inF, beta: 1,
                            c: pg.baseAddress!, ldc: r)
                    }
                }
                b.withUnsafeBufferPointer { pb in
                    pA.grad.withUnsafeMutableBufferPointer { pg in
                        BLAS.sgemm(
                            transA: true, transB: false, m: r, n: inF, k: outF, a: pb.baseAddress!, lda: r, b: pd.baseAddress!, ldb: inF, beta: 1,
                            c: pg.baseAddress!, ldc: inF)
                    }
                }
            }
            adapterSeconds += Clock.now() - t0
            if needDx {
                dy.withUnsafeBufferPointer { pdy in
                    weff.withUnsafeBufferPointer { pw in
                        dx!.withUnsafeMutableBufferPointer { pdx in
                            BLAS.sgemm(
                                transA: false, transB: false, m: n, n: inF, k: outF, a: pdy.baseAddress!, lda: outF, b: pw.baseAddress!, ldb: inF,
                                c: pdx.baseAddress!, ldc: inF)
                        }
                    }
                }
            }
            return dx
        }
        var dinner = dy
        if usedAdapter, let scale = lin.doraScale, let pM {
            // y = scale ⊙ inner + b, scale = m / n (n detached): dm = Σ dy ⊙ inner / n; dinner = dy ⊙ scale.
            let t0 = Clock.now()
            defer { adapterSeconds += Clock.now() - t0 }
            let m = lin.magnitude!
            for o in 0..<outF {
                var acc: Float = 0
                for i in 0..<n { acc += dy[i * outF + o] * inner[i * outF + o] }
                pM.grad[o] += acc * scale[o] / m[o]
            }
            for i in 0..<n { for o in 0..<outF { dinner[i * outF + o] *= scale[o] } }
        }
        if needDx {
            dinner.withUnsafeBufferPointer { pdy in
                dx!.withUnsafeMutableBufferPointer { pdx in lin.weight.multiply(pdy.baseAddress!, rows: n, into: pdx.baseAddress!) }
            }
        }
        if usedAdapter, let pA, let pB, let a = lin.a, let b = lin.b {
            let t0 = Clock.now()
            defer { adapterSeconds += Clock.now() - t0 }
            let r = lin.rank
            let s = lin.scaling
            // dB += s · dinnerᵀ u; du = s · dinner B; dA += duᵀ xd; dx += drop'(du A).
            dinner.withUnsafeBufferPointer { pdy in
                u.withUnsafeBufferPointer { pu in
                    pB.grad.withUnsafeMutableBufferPointer { pg in
                        BLAS.sgemm(
                            transA: true, transB: false, m: outF, n: r, k: n, alpha: s, a: pdy.baseAddress!, lda: outF, b: pu.baseAddress!, ldb: r, beta: 1,
                            c: pg.baseAddress!, ldc: r)
                    }
                }
            }
            var du = [Float](repeating: 0, count: n * r)
            dinner.withUnsafeBufferPointer { pdy in
                b.withUnsafeBufferPointer { pb in
                    du.withUnsafeMutableBufferPointer { pd in
                        BLAS.sgemm(
                            transA: false, transB: false, m: n, n: r, k: outF, alpha: s, a: pdy.baseAddress!, lda: outF, b: pb.baseAddress!, ldb: r,
                            c: pd.baseAddress!, ldc: r)
                    }
                }
            }
            du.withUnsafeBufferPointer { pd in
                xd.withUnsafeBufferPointer { px in
                    pA.grad.withUnsafeMutableBufferPointer { pg in
                        BLAS.sgemm(
                            transA: true, transB: false, m: r, n: inF, k: n, a: pd.baseAddress!, lda: r, b: px.baseAddress!, ldb: inF, beta: 1,
                            c: pg.baseAddress!, ldc: inF)
                    }
                }
            }
            if needDx {
                var dxa = [Float](repeating: 0, count: n * inF)
                du.withUnsafeBufferPointer { pd in
                    a.withUnsafeBufferPointer { pa in
                        dxa.withUnsafeMutableBufferPointer { px in
                            BLAS.sgemm(
                                transA: false, transB: false, m: n, n: inF, k: r, a: pd.baseAddress!, lda: r, b: pa.baseAddress!, ldb: inF, c: px.baseAddress!,
                                ldc: inF)
                        }
                    }
                }
                // Through the dropout on the adapter input: zero where dropped, 1/keep where kept.
                if dropMask.isEmpty { for i in dxa.indices { dx![i] += dxa[i] } } else { for i in dxa.indices { dx![i] += dxa[i] * dropMask[i] } }
            }
        }
        return dx
    }
}

/// Inverted dropout, as torch's nn.Dropout in training: kept entries are scaled by 1/(1 − p).
enum Dropout {
    /// Inverted dropout's mask: each entry 1/(1 − p) (kept) or 0 (dropped, probability p). Two entries per
    /// 64-bit draw, each from its own 24 bits (u/2²⁴ < 1 − p keeps, as `uniformFloat() < 1 − p` would).
    static func mask(_ n: Int, p: Float, rng: inout SeededRNG) -> [Float] {
        let keep = 1 - p
        let threshold = UInt64((Double(keep) * 0x1p24).rounded(.up))
        let value = 1 / keep
        var mask = [Float](repeating: 0, count: n)
        mask.withUnsafeMutableBufferPointer { m in
            var i = 0
            while i < n {
                let r = rng.next()
                m[i] = r >> 40 < threshold ? value : 0
                if i + 1 < n { m[i + 1] = (r >> 8) & 0xFF_FFFF < threshold ? value : 0 }
                i += 2
            }
        }
        return mask
    }
}
