import CLAPACKE

public struct LAPACKError: Error {
    public let routine: String
    public let info: Int32
}

/// LAPACK factorizations on row-major Float32 matrices.
public enum LAPACK {
    /// Thin SVD A = U diag(S) Vt (A is m x n, k = min(m, n); U m x k, S k, Vt k x n), singular values descending.
    public static func svd(_ a: Tensor) throws -> (u: Tensor, s: [Float], vt: Tensor) {
        let m = a.rows
        let n = a.cols
        let k = min(m, n)
        if k == 0 { return (Tensor(zeros: [m, 0]), [], Tensor(zeros: [0, n])) }
        var work = a.data
        var s = [Float](repeating: 0, count: k)
        var u = [Float](repeating: 0, count: m * k)
        var vt = [Float](repeating: 0, count: k * n)
        let info = LAPACKE_sgesdd(
            LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "S")), Int32(m), Int32(n), &work, Int32(n),
            &s, &u, Int32(k), &vt, Int32(n))
        if info != 0 { throw LAPACKError(routine: "sgesdd", info: info) }
        return (Tensor(shape: [m, k], data: u), s, Tensor(shape: [k, n], data: vt))
    }

    /// Thin QR A = Q R (A is m x n, k = min(m, n); Q m x k with orthonormal columns, R k x n upper triangular).
    public static func qr(_ a: Tensor) throws -> (q: Tensor, r: Tensor) {
        let m = a.rows
        let n = a.cols
        let k = min(m, n)
        if k == 0 { return (Tensor(zeros: [m, 0]), Tensor(zeros: [0, n])) }
        var work = a.data
        var tau = [Float](repeating: 0, count: k)
        var info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, Int32(m), Int32(n), &work, Int32(n), &tau)
        if info != 0 { throw LAPACKError(routine: "sgeqrf", info: info) }
        var r = [Float](repeating: 0, count: k * n)
        for i in 0..<k { for j in i..<n { r[i * n + j] = work[i * n + j] } }
        // Q: the first k columns, generated in an m x k buffer.
        var q = [Float](repeating: 0, count: m * k)
        for i in 0..<m { for j in 0..<k { q[i * k + j] = work[i * n + j] } }
        info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, Int32(m), Int32(k), Int32(k), &q, Int32(k), &tau)
        if info != 0 { throw LAPACKError(routine: "sorgqr", info: info) }
        return (Tensor(shape: [m, k], data: q), Tensor(shape: [k, n], data: r))
    }

    /// The k largest singular triplets of A (m x n) by LAPACK `sgesvdx` (RANGE='I'), without a full SVD:
    /// U m x k, S k (descending), Vt k x n. k is clamped to min(m, n).
    public static func svdTop(_ a: Tensor, k: Int) throws -> (u: Tensor, s: [Float], vt: Tensor) {
        let m = a.rows
        let n = a.cols
        let kk = min(k, m, n)
        if kk <= 0 { return (Tensor(zeros: [m, 0]), [], Tensor(zeros: [0, n])) }
        var work = a.data
        var ns: Int32 = 0
        var s = [Float](repeating: 0, count: min(m, n))
        var u = [Float](repeating: 0, count: m * kk)
        var vt = [Float](repeating: 0, count: kk * n)
        var superb = [Int32](repeating: 0, count: 12 * min(m, n))
        let info = LAPACKE_sgesvdx(
            LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "V")), Int8(UInt8(ascii: "V")), Int8(UInt8(ascii: "I")),
            Int32(m), Int32(n), &work, Int32(n), 0, 0, 1, Int32(kk), &ns,
            &s, &u, Int32(kk), &vt, Int32(n), &superb)
        if info != 0 { throw LAPACKError(routine: "sgesvdx", info: info) }
        return (Tensor(shape: [m, kk], data: u), Array(s.prefix(kk)), Tensor(shape: [kk, n], data: vt))
    }
}
