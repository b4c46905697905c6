import CotoCLI

// --grid --jobs N: the grid's shards 1/N … N/N as local processes side by side.

extension Train {
    /// Runs shard i/N of the grid in N local processes (`LocalJobs`): each keeps `--threads`, so the same
    /// batch split and the same parallel pieces, hence adapters byte-identical to the one-process run.
    func runGridLocally(_ gridPath: String) throws {
        let cores = try LocalJobs.run(jobs: jobs, subject: gridPath)
        if !out.quiet { Console.writeErr("grid \(gridPath): \(jobs) local jobs finished, \(cores) core(s) each") }
    }
}
