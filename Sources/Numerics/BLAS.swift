import CBLAS

/// BLAS-backed linear algebra on row-major Float32 tensors.
public enum BLAS {
    /// Sets OpenBLAS's thread count (call once at start-up for reproducible timings).
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// OpenBLAS build configuration and the kernel it runs (`openblas_get_config()`, core name).
    public static var config: String {
        let cfg = openblas_get_config().map { String(cString: $0) } ?? "unknown"
        let core = openblas_get_corename().map { String(cString: $0) } ?? "unknown"
        return "\(cfg) (core: \(core))"
    }

    /// C = alpha * op(A) * op(B) + beta * C on raw row-major buffers. op(A) is m x k, op(B) is k x n.
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        guard m > 0, n > 0 else { return }
        if k == 0 {
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } }
            return
        }
        let t0 = GemmCounter.enabled ? Clock.now() : 0
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        if GemmCounter.enabled {
            GemmCounter.record(.init(m: m, n: n, k: k, transA: transA, transB: transB), seconds: Clock.now() - t0)
        }
    }

    /// op(A) x op(B) for 2-D tensors.
    public static func matmul(_ a: Tensor, _ b: Tensor, transA: Bool = false, transB: Bool = false, alpha: Float = 1) -> Tensor {
        let (ar, ac) = (a.rows, a.cols)
        let (br, bc) = (b.rows, b.cols)
        let m = transA ? ac : ar
        let k = transA ? ar : ac
        let k2 = transB ? bc : br
        let n = transB ? br : bc
        precondition(k == k2, "matmul: inner dimensions \(k) and \(k2) differ")
        var out = [Float](repeating: 0, count: m * n)
        a.data.withUnsafeBufferPointer { pa in
            b.data.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { pc in
                    if let ba = pa.baseAddress, let bb = pb.baseAddress, let bcp = pc.baseAddress {
                        sgemm(
                            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                            a: ba, lda: ac, b: bb, ldb: bc, c: bcp, ldc: n)
                    }
                }
            }
        }
        return Tensor(shape: [m, n], data: out)
    }

    /// Batched matmul over the leading dimension of 3-D tensors: out[i] = op(a[i]) x op(b[i]).
    public static func batchedMatmul(_ a: Tensor, _ b: Tensor, transA: Bool = false, transB: Bool = false) -> Tensor {
        precondition(a.rank == 3 && b.rank == 3 && a.shape[0] == b.shape[0], "batchedMatmul: needs [batch, r, c] tensors")
        let batch = a.shape[0]
        let (ar, ac) = (a.shape[1], a.shape[2])
        let (br, bc) = (b.shape[1], b.shape[2])
        let m = transA ? ac : ar
        let k = transA ? ar : ac
        let n = transB ? br : bc
        precondition(k == (transB ? bc : br), "batchedMatmul: inner dimensions differ")
        var out = [Float](repeating: 0, count: batch * m * n)
        a.data.withUnsafeBufferPointer { pa in
            b.data.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { pc in
                    guard let ba = pa.baseAddress, let bb = pb.baseAddress, let bcp = pc.baseAddress else { return }
                    for i in 0..<batch {
                        sgemm(
                            transA: transA, transB: transB, m: m, n: n, k: k,
                            a: ba + i * ar * ac, lda: ac, b: bb + i * br * bc, ldb: bc,
                            c: bcp + i * m * n, ldc: n)
                    }
                }
            }
        }
        return Tensor(shape: [batch, m, n], data: out)
    }

    /// ||B·A||_F without forming B·A: sqrt(trace((BᵀB)(AAᵀ))), r x r work for B [m, r], A [r, n].
    public static func productFrobeniusNorm(b: Tensor, a: Tensor) -> Double {
        let btb = matmul(b, b, transA: true)
        let aat = matmul(a, a, transB: true)
        var s = 0.0
        for i in 0..<btb.rows { for j in 0..<btb.cols { s += Double(btb[i, j]) * Double(aat[j, i]) } }
        return max(0, s).squareRoot()
    }
}
