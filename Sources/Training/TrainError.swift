import Numerics

/// An error of training: a configuration, a data record or a checkpoint it cannot use (subject: the file
/// and line, the option, or the run directory).
public struct TrainError: CotoError, Equatable {
    public let subject: String?
    public let message: String
    public init(_ subject: String?, _ message: String) {
        self.subject = subject
        self.message = message
    }
}
