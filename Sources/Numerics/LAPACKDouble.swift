import CBLAS
import CLAPACKE

extension BLAS {
    /// C = A·B in Float64 (A m x k, B k x n, row-major), for the Float64 closed forms.
    public static func dgemm(_ a: [Double], _ b: [Double], m: Int, n: Int, k: Int) -> [Double] {
        precondition(a.count == m * k && b.count == k * n, "dgemm: \(a.count), \(b.count) values for \(m)x\(k) · \(k)x\(n)")
        var c = [Double](repeating: 0, count: m * n)
        guard m > 0, n > 0, k > 0 else { return c }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
        return c
    }
}

/// Float64 factorizations on row-major matrices, for closed forms whose conditioning Float32 cannot carry
/// (RegMean's Σ G⁻¹ of activation Grams).
extension LAPACK {
    /// The lower Cholesky factor L of a symmetric positive definite n x n matrix (A = L Lᵀ); throws
    /// `LAPACKError` (info > 0: not positive definite at that order) otherwise.
    public static func cholesky(_ a: [Double], n: Int) throws -> [Double] {
        precondition(a.count == n * n, "cholesky: \(a.count) values for \(n)x\(n)")
        var l = a
        let info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "L")), Int32(n), &l, Int32(n))
        if info != 0 { throw LAPACKError(routine: "dpotrf", info: info) }
        for i in 0..<n { for j in (i + 1)..<n { l[i * n + j] = 0 } }
        return l
    }

    /// X with A X = B for A = L Lᵀ given its Cholesky factor `l` (n x n); B is n x nrhs.
    public static func choleskySolve(_ l: [Double], n: Int, _ b: [Double], nrhs: Int) throws -> [Double] {
        precondition(l.count == n * n && b.count == n * nrhs, "choleskySolve: shapes")
        if nrhs == 0 { return [] }
        var x = b
        let info = LAPACKE_dpotrs(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "L")), Int32(n), Int32(nrhs), l, Int32(n), &x, Int32(nrhs))
        if info != 0 { throw LAPACKError(routine: "dpotrs", info: info) }
        return x
    }

    /// X with op(L) X = B for a lower triangular n x n `l` (op: L, or Lᵀ with `transpose`); B is n x nrhs.
    public static func lowerSolve(_ l: [Double], n: Int, _ b: [Double], nrhs: Int, transpose: Bool) throws -> [Double] {
        precondition(l.count == n * n && b.count == n * nrhs, "lowerSolve: shapes")
        if nrhs == 0 { return [] }
        var x = b
        let info = LAPACKE_dtrtrs(
            LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "L")), Int8(UInt8(ascii: transpose ? "T" : "N")), Int8(UInt8(ascii: "N")), Int32(n), Int32(nrhs), l,
            Int32(n), &x, Int32(nrhs))
        if info != 0 { throw LAPACKError(routine: "dtrtrs", info: info) }
        return x
    }

    /// Thin SVD in Float64: A (m x n) = U diag(S) Vt, k = min(m, n), singular values descending.
    public static func svd(_ a: [Double], m: Int, n: Int) throws -> (u: [Double], s: [Double], vt: [Double]) {
        precondition(a.count == m * n, "svd: \(a.count) values for \(m)x\(n)")
        let k = min(m, n)
        if k == 0 { return ([], [], []) }
        var work = a
        var s = [Double](repeating: 0, count: k)
        var u = [Double](repeating: 0, count: m * k)
        var vt = [Double](repeating: 0, count: k * n)
        let info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "S")), Int32(m), Int32(n), &work, Int32(n), &s, &u, Int32(k), &vt, Int32(n))
        if info != 0 { throw LAPACKError(routine: "dgesdd", info: info) }
        return (u, s, vt)
    }
}

extension LAPACK {
    /// Eigen-decomposition of a symmetric n x n matrix (LAPACK `dsyev`): eigenvalues ascending, and the
    /// eigenvectors as the columns of a row-major n x n matrix.
    public static func symmetricEigen(_ a: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
        precondition(a.count == n * n, "symmetricEigen: \(a.count) values for \(n)x\(n)")
        if n == 0 { return ([], []) }
        var v = a
        var w = [Double](repeating: 0, count: n)
        let info = LAPACKE_dsyev(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "V")), Int8(UInt8(ascii: "U")), Int32(n), &v, Int32(n), &w)
        if info != 0 { throw LAPACKError(routine: "dsyev", info: info) }
        return (w, v)
    }
}
