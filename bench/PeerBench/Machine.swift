import Foundation

enum Machine {
    /// What the report states about the machine and the programs compared.
    static func describe(chime: String) -> [String: String] {
        var m: [String: String] = [:]
        if let cpu = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
            m["cpu"] = cpu.split(separator: "\n").first { $0.hasPrefix("model name") }?.split(separator: ":", maxSplits: 1).last?
                .trimmingCharacters(in: .whitespaces)
        }
        m["cores"] = "\(ProcessInfo.processInfo.activeProcessorCount)"
        m["memoryGiB"] = String(format: "%.1f", Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824)
        m["kernel"] = ProcessInfo.processInfo.operatingSystemVersionString
        m["beanstalkd"] = output("beanstalkd", ["-v"])
        m["redis"] = output("redis-server", ["--version"])
        m["chime"] = output("git", ["rev-parse", "--short", "HEAD"]).map { "git \($0)" }
        return m
    }

    private static func output(_ name: String, _ args: [String]) -> String? {
        guard let path = try? ServerProcess.resolve(name) else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Bytes of the regular files under `path`.
    static func directoryBytes(_ path: String) -> Int {
        guard let e = FileManager.default.enumerator(atPath: path) else { return 0 }
        var total = 0
        while let name = e.nextObject() as? String {
            if let size = (try? FileManager.default.attributesOfItem(atPath: path + "/" + name))?[.size] as? NSNumber,
                (e.fileAttributes?[.type] as? FileAttributeType) == .typeRegular
            {
                total += size.intValue
            }
        }
        return total
    }
}

enum Chart {
    /// The lateness distributions as a table (percentile, then one column per system) and,
    /// when gnuplot is installed, a PNG beside the Markdown table.
    static func lateness(_ series: [(String, [Int64])], directory: String, quick: Bool) throws {
        guard !series.isEmpty else { return }
        let dat = "\(directory)/latest-lateness.dat"
        var text = "# percentile " + series.map { "\"\($0.0)\"" }.joined(separator: " ") + "  (received − due, ms; samples in µs)\n"
        var p = 0.0
        while p <= 100.0001 {
            text += String(format: "%.1f", p)
            for (_, sorted) in series {
                let v = sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p / 100))]
                text += String(format: " %.3f", Double(v) / 1_000)
            }
            text += "\n"
            p += p < 90 ? 1 : (p < 99 ? 0.5 : 0.1)
        }
        try text.write(toFile: dat, atomically: true, encoding: .utf8)
        guard let gnuplot = try? ServerProcess.resolve("gnuplot") else { return }
        var script = """
            set terminal pngcairo size 900,560 noenhanced
            set output '\(directory)/latest-lateness.png'
            set title 'Lateness: received − due\(quick ? " (quick mode: meaningless)" : "")'
            set xlabel 'ms late (log scale; under 0.01 drawn at 0.01)'
            set ylabel 'messages delivered by then (%)'
            set logscale x
            set grid
            set key bottom right
            plot 
            """
        script += series.enumerated().map { i, s in
            "'\(dat)' using ($\(i + 2) < 0.01 ? 0.01 : $\(i + 2)):1 with lines linewidth 2 title '\(s.0)'"
        }.joined(separator: ", ")
        script += "\n"
        let gp = "\(directory)/latest-lateness.gp"
        try script.write(toFile: gp, atomically: true, encoding: .utf8)
        let proc = Process()
        proc.executableURL = URL(fileURLWithPath: gnuplot)
        proc.arguments = [gp]
        try proc.run()
        proc.waitUntilExit()
    }
}
