import ChimeStore

/// Replacing a table's record log by a compacted copy, crash-safe: the copy is written and
/// synced in `<table>.new/`, then the table goes to `<table>.old/` and the copy takes its
/// name — two renames. A crash anywhere leaves one whole table: `finish` (at opening)
/// completes or undoes what was cut short.
enum TableSwap {
    /// Puts the synced copy at `directory + ".new"` in the table's place.
    static func swapIn(_ directory: String) throws {
        try Directory.rename(directory, to: directory + ".old")
        try Directory.rename(directory + ".new", to: directory)
        try Directory.sync(String(directory[..<(directory.lastIndex(of: "/") ?? directory.startIndex)]))
        try Directory.removeTree(directory + ".old")
    }

    /// Closes the table's `log`, puts the synced copy in its place (`swapIn`) and opens the
    /// table again into `log`. A swap that fails leaves whichever whole table is there
    /// (`finish`), opened, and throws.
    static func replace(_ log: inout RecordLog, directory: String, open: () throws -> RecordLog) throws {
        try log.close()
        do {
            try swapIn(directory)
        } catch {
            try finish(directory)
            log = try open()
            throw error
        }
        log = try open()
    }

    /// Completes or undoes a swap a crash cut short: without the table, the new copy (whole:
    /// it is renamed only once synced) or else the old one takes its place; beside the
    /// table, leftover copies go.
    static func finish(_ directory: String) throws {
        let fresh = directory + ".new"
        let old = directory + ".old"
        if !Directory.isDirectory(directory) {
            // Between the two renames: the new copy is whole.
            if Directory.isDirectory(fresh) {
                try Directory.rename(fresh, to: directory)
            } else if Directory.isDirectory(old) {
                try Directory.rename(old, to: directory)
            }
        }
        // Beside the table, a new copy is one cut short, an old one is done with.
        if Directory.isDirectory(fresh) { try Directory.removeTree(fresh) }
        if Directory.isDirectory(old) { try Directory.removeTree(old) }
    }
}
