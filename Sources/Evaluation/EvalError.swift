import Numerics

/// An error of evaluation, sweeps and reports: a task file, a record, an option or a run directory it
/// cannot use (subject: the file and line, or the option).
public struct EvalError: CotoError, Equatable {
    public let subject: String?
    public let message: String
    public init(_ subject: String?, _ message: String) {
        self.subject = subject
        self.message = message
    }
}
