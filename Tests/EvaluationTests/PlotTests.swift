import Testing
import Foundation
import CZlib
@testable import Evaluation
import Model
import Operators
import Checkpoint
import Numerics
import TestSupport

enum PNGCheck {
    struct Image {
        var width: Int
        var height: Int
        var rows: [[UInt8]]
    }
    struct Failure: Error { let why: String }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
        }
        return c ^ 0xFFFF_FFFF
    }

    static func decode(_ d: [UInt8]) throws -> Image {
        guard d.count > 8, Array(d[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else { throw Failure(why: "signature") }
        func be(_ i: Int) -> Int { Int(d[i]) << 24 | Int(d[i + 1]) << 16 | Int(d[i + 2]) << 8 | Int(d[i + 3]) }
        var i = 8
        var w = 0
        var h = 0
        var idat: [UInt8] = []
        var types: [String] = []
        while i + 12 <= d.count {
            let n = be(i)
            let type = String(decoding: d[(i + 4)..<(i + 8)], as: UTF8.self)
            guard i + 12 + n <= d.count else { throw Failure(why: "chunk past end") }
            let body = Array(d[(i + 4)..<(i + 8 + n)])
            guard UInt32(be(i + 8 + n)) == crc32(body) else { throw Failure(why: "CRC of \(type)") }
            let data = Array(body.dropFirst(4))
            if type == "IHDR" {
                guard data.count == 13, data[8] == 8, data[9] == 2, data[10] == 0, data[11] == 0, data[12] == 0 else { throw Failure(why: "IHDR") }
                w = Int(data[0]) << 24 | Int(data[1]) << 16 | Int(data[2]) << 8 | Int(data[3])
                h = Int(data[4]) << 24 | Int(data[5]) << 16 | Int(data[6]) << 8 | Int(data[7])
            }
            if type == "IDAT" { idat += data }
            types.append(type)
            i += 12 + n
        }
        guard types.first == "IHDR", types.last == "IEND", i == d.count else { throw Failure(why: "chunk order \(types)") }
        var outLen = uLong(h * (w * 3 + 1))
        var raw = [UInt8](repeating: 0, count: Int(outLen))
        let rc = raw.withUnsafeMutableBufferPointer { r in
            idat.withUnsafeBufferPointer { z in uncompress(r.baseAddress!, &outLen, z.baseAddress!, uLong(idat.count)) }
        }
        guard rc == Z_OK, Int(outLen) == h * (w * 3 + 1) else { throw Failure(why: "inflate (\(rc))") }
        var rows: [[UInt8]] = []
        for y in 0..<h {
            let s = y * (w * 3 + 1)
            guard raw[s] == 0 else { throw Failure(why: "filter type \(raw[s])") }
            rows.append(Array(raw[(s + 1)..<(s + 1 + w * 3)]))
        }
        return Image(width: w, height: h, rows: rows)
    }
}

@Suite struct PlotTests {
    @Test func fontGlyphsAreFiveBySeven() {
        for (c, rows) in Font5x7.table {
            #expect(rows.count == 7, "glyph \(c)")
            #expect(rows.allSatisfy { $0 < 32 }, "glyph \(c)")
        }
        for c in " 0123456789.,-+()%:/=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZλ" { #expect(Font5x7.glyph(c) != nil, "glyph \(c)") }
    }

    @Test func pngRoundTripsThePixels() throws {
        var c = Canvas(width: 7, height: 5)
        c.line(0, 0, 6, 4, .black)
        c.set(6, 0, .init(1, 2, 3))
        let img = try PNGCheck.decode(try c.png())
        #expect(img.width == 7 && img.height == 5)
        #expect(Array(img.rows[0][18..<21]) == [1, 2, 3])
        #expect(Array(img.rows[0][0..<3]) == [0, 0, 0] && Array(img.rows[4][18..<21]) == [0, 0, 0])
        #expect(Array(img.rows[4][0..<3]) == [255, 255, 255])
    }

    @Test func figureDrawsSeriesTextAndAxes() throws {
        var f = Figure(title: "T", xLabel: "x", yLabel: "y")
        f.series = [
            .init(name: "lora", x: [0, 0.5, 1], y: [0.8, 0.6, 0.9]), .init(name: "coto", x: [0, 0.5, 1], y: [0.8, 0.78, 0.85], err: [0.01, 0.02, 0.01]),
        ]
        let c = f.render()
        var colours = Set<[UInt8]>()
        for y in 0..<c.height {
            for x in 0..<c.width {
                let p = c.get(x, y)
                colours.insert([p.r, p.g, p.b])
            }
        }
        let p0 = Canvas.RGB.palette[0]
        let p1 = Canvas.RGB.palette[1]
        #expect(colours.contains([p0.r, p0.g, p0.b]) && colours.contains([p1.r, p1.g, p1.b]) && colours.contains([0, 0, 0]))
        #expect(Figure.ticks(0, 1) == [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1] || Figure.ticks(0, 1).count == 6)
        #expect(Figure.ticks(0.74, 0.82).allSatisfy { $0 >= 0.74 - 1e-12 && $0 <= 0.82 + 1e-12 })
        // Labels have the step's decimals: 0.725, 0.750, ... never print alike.
        let t = Figure.ticks(0.72, 0.84)
        let labels = t.map { Figure.label($0, step: t[1] - t[0]) }
        #expect(Set(labels).count == labels.count, "\(labels)")
        #expect(Figure.label(0.825, step: 0.025) == "0.825" && Figure.label(0.5, step: 0.1) == "0.5" && Figure.label(20, step: 5) == "20")
    }
}

extension PlotTests {
    /// A legend wider than the figure wraps onto more rows (it crashed the report with six seeds' dev curves);
    /// every series' swatch is drawn inside the canvas, and a rectangle outside the canvas draws nothing.
    @Test func aLongLegendWrapsAndStaysInside() throws {
        var f = Figure(title: "Dev accuracy: verb15", xLabel: "optimizer step", yLabel: "dev accuracy")
        let n = min(6, Canvas.RGB.palette.count)
        f.series = (0..<n).map { i in .init(name: "coto s\(i) (not converged) with a long name", x: [0, 1], y: [0.1 * Double(i), 0.5]) }
        let c = f.render()
        // The swatches: a 14 x 5 block of the series' colour at the legend rows below the x label.
        for i in 0..<n {
            let col = Canvas.RGB.palette[i]
            var found = false
            for y in (c.height - 14 * n - 4)..<c.height {
                for x in 0..<(c.width - 14) where (0..<14).allSatisfy({ c.get(x + $0, y) == col }) { found = true }
            }
            #expect(found, "series \(i)'s legend swatch is missing")
        }
        var blank = Canvas(width: 10, height: 10)
        blank.fill(x: 20, y: 2, w: 5, h: 5, .black)
        blank.fill(x: 2, y: -9, w: 5, h: 5, .black)
        #expect((0..<10).allSatisfy { y in (0..<10).allSatisfy { blank.get($0, y) == .white } })
    }
}
