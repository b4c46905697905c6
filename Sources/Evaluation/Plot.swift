import Checkpoint
import CZlib
import Foundation

/// An RGB raster with lines, rectangles and 5×7 text, written as PNG through zlib.
public struct Canvas {
    public let width: Int, height: Int
    public private(set) var pixels: [UInt8]  // RGB, row-major

    public init(width: Int, height: Int, background: RGB = .white) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        fill(x: 0, y: 0, w: width, h: height, background)
    }

    public struct RGB: Sendable, Equatable {
        public var r, g, b: UInt8
        public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) {
            self.r = r
            self.g = g
            self.b = b
        }
        public static let white = RGB(255, 255, 255), black = RGB(0, 0, 0), grid = RGB(225, 225, 225), gray = RGB(110, 110, 110)
        /// Series colours (colour-blind safe, Okabe–Ito).
        public static let palette = [RGB(213, 94, 0), RGB(0, 114, 178), RGB(0, 158, 115), RGB(230, 159, 0), RGB(204, 121, 167), RGB(86, 180, 233)]
    }

    public mutating func set(_ x: Int, _ y: Int, _ c: RGB) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = (y * width + x) * 3
        pixels[i] = c.r
        pixels[i + 1] = c.g
        pixels[i + 2] = c.b
    }

    public func get(_ x: Int, _ y: Int) -> RGB {
        let i = (y * width + x) * 3
        return RGB(pixels[i], pixels[i + 1], pixels[i + 2])
    }

    /// A rectangle, clipped to the canvas (nothing when it lies outside).
    public mutating func fill(x: Int, y: Int, w: Int, h: Int, _ c: RGB) {
        let (x0, x1, y0, y1) = (max(0, x), min(width, x + w), max(0, y), min(height, y + h))
        guard x0 < x1, y0 < y1 else { return }
        for yy in y0..<y1 { for xx in x0..<x1 { set(xx, yy, c) } }
    }

    /// A line of the given thickness (Bresenham, square pen).
    public mutating func line(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: RGB, thickness t: Int = 1) {
        var x = x0
        var y = y0
        let dx = abs(x1 - x0)
        let dy = -abs(y1 - y0)
        let sx = x0 < x1 ? 1 : -1
        let sy = y0 < y1 ? 1 : -1
        var err = dx + dy
        while true {
            fill(x: x - (t - 1) / 2, y: y - (t - 1) / 2, w: t, h: t, c)
            if x == x1 && y == y1 { break }
            let e2 = 2 * err
            if e2 >= dy {
                err += dy
                x += sx
            }
            if e2 <= dx {
                err += dx
                y += sy
            }
        }
    }

    public static func textWidth(_ s: String, scale: Int = 1) -> Int { max(0, s.count * (Font5x7.width + 1) * scale - scale) }

    /// Text with its top-left corner at (x, y); `vertical` rotates it 90° counter-clockwise (y is then the bottom).
    public mutating func text(_ s: String, x: Int, y: Int, _ c: RGB = .black, scale: Int = 1, vertical: Bool = false) {
        var pen = 0
        for ch in s {
            let rows = Font5x7.glyph(ch) ?? Font5x7.glyph("?")!
            for (ry, bits) in rows.enumerated() {
                for rx in 0..<Font5x7.width where bits & (1 << (Font5x7.width - 1 - rx)) != 0 {
                    for sy in 0..<scale {
                        for sx in 0..<scale {
                            let gx = pen + rx * scale + sx
                            let gy = ry * scale + sy
                            if vertical { set(x + gy, y - gx, c) } else { set(x + gx, y + gy, c) }
                        }
                    }
                }
            }
            pen += (Font5x7.width + 1) * scale
        }
    }

    /// PNG bytes: signature, IHDR (8-bit RGB), one zlib IDAT (filter 0 per row), IEND; CRCs by zlib.
    public func png() throws -> [UInt8] {
        var raw = [UInt8]()
        raw.reserveCapacity(height * (width * 3 + 1))
        for y in 0..<height {
            raw.append(0)
            raw.append(contentsOf: pixels[(y * width * 3)..<((y + 1) * width * 3)])
        }
        var destLen = compressBound(uLong(raw.count))
        var z = [UInt8](repeating: 0, count: Int(destLen))
        let rc = z.withUnsafeMutableBufferPointer { zp in
            raw.withUnsafeBufferPointer { rp in
                compress2(zp.baseAddress!, &destLen, rp.baseAddress!, uLong(raw.count), 9)
            }
        }
        // compress2 only fails for lack of memory or a too-small buffer; compressBound rules the latter out.
        guard rc == Z_OK else { throw EvalError("plot", "zlib compress2 failed (\(rc)) for a \(width)x\(height) image") }
        z.removeSubrange(Int(destLen)...)
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 255), UInt8((v >> 8) & 255), UInt8(v & 255)] }
        func chunk(_ type: String, _ data: [UInt8]) {
            out += be32(UInt32(data.count))
            let body = Array(type.utf8) + data
            out += body
            let crc = body.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
            out += be32(UInt32(crc))
        }
        chunk("IHDR", be32(UInt32(width)) + be32(UInt32(height)) + [8, 2, 0, 0, 0])
        chunk("IDAT", z)
        chunk("IEND", [])
        return out
    }
}

/// A figure: line plot over numeric x, or over categories (bars when `bars`), with optional error
/// bars, axes, ticks, a legend, a title and axis labels.
public struct Figure {
    public struct Series {
        public var name: String
        public var x: [Double]
        public var y: [Double]
        public var err: [Double]?
        public init(name: String, x: [Double], y: [Double], err: [Double]? = nil) {
            self.name = name
            self.x = x
            self.y = y
            self.err = err
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series] = []
    /// Names of the x positions 0, 1, 2... (categorical axis) instead of numeric ticks.
    public var categories: [String]? = nil
    public var bars = false
    public var width = 640, height = 420

    public init(title: String, xLabel: String, yLabel: String) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
    }

    /// "Nice" tick values covering [lo, hi] (steps 1, 2, 2.5, 5 × 10^k).
    public static func ticks(_ lo: Double, _ hi: Double, count: Int = 6) -> [Double] {
        guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
        let raw = (hi - lo) / Double(max(1, count - 1))
        let mag = pow(10, floor(log10(raw)))
        let step = [1, 2, 2.5, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? raw
        var t: [Double] = []
        var v = ceil(lo / step - 1e-9) * step
        while v <= hi + step * 1e-9 {
            t.append(abs(v) < step * 1e-9 ? 0 : v)
            v += step
        }
        return t
    }

    /// A tick label with as many decimals as the step needs (0.025 → 3), so neighbours never print alike.
    static func label(_ v: Double, step: Double) -> String {
        var digits = 0
        while digits < 6 {
            let scaled = step * pow(10, Double(digits))
            if abs(scaled - scaled.rounded()) < 1e-6 * max(1, scaled) { break }
            digits += 1
        }
        return String(format: "%.\(digits)f", v)
    }

    public func render() -> Canvas {
        var c = Canvas(width: width, height: height)
        let left = 64
        let right = 16
        let top = 34
        let bottom = 52
        // Legend entries flow left to right and wrap onto more rows of 14 pixels when they do not fit.
        let showLegend = series.count > 1 || !(series.first?.name.isEmpty ?? true)
        var legendAt: [(x: Int, row: Int)] = []
        if showLegend {
            var (x, row) = (left, 0)
            for s in series {
                let w = 18 + Canvas.textWidth(s.name)
                if x > left && x + w > width - right {
                    (x, row) = (left, row + 1)
                }
                legendAt.append((x, row))
                x += w + 18
            }
        }
        let legendH = showLegend ? 14 * ((legendAt.last?.row ?? 0) + 1) : 0
        let pw = width - left - right
        let ph = height - top - bottom - legendH
        // Ranges.
        let ys = series.flatMap { s in s.y.indices.flatMap { i in [s.y[i] - (s.err?[i] ?? 0), s.y[i] + (s.err?[i] ?? 0)] } }.filter(\.isFinite)
        var ylo = ys.min() ?? 0
        var yhi = ys.max() ?? 1
        if bars {
            ylo = min(ylo, 0)
            yhi = max(yhi, 0)
        }
        if yhi - ylo < 1e-9 {
            ylo -= 0.5
            yhi += 0.5
        }
        let pad = (yhi - ylo) * 0.05
        if !(bars && ylo == 0) { ylo -= pad }
        yhi += pad
        let xs = series.flatMap(\.x)
        var xlo = xs.min() ?? 0
        var xhi = xs.max() ?? 1
        if let cats = categories {
            xlo = -0.5
            xhi = Double(cats.count) - 0.5
        }
        if xhi - xlo < 1e-9 {
            xlo -= 0.5
            xhi += 0.5
        }
        func px(_ x: Double) -> Int { left + Int(((x - xlo) / (xhi - xlo) * Double(pw)).rounded()) }
        func py(_ y: Double) -> Int { top + ph - Int(((y - ylo) / (yhi - ylo) * Double(ph)).rounded()) }
        // Grid, ticks, labels.
        let yt = Figure.ticks(ylo, yhi)
        let ystep = yt.count > 1 ? yt[1] - yt[0] : 1
        for v in yt {
            let y = py(v)
            c.line(left, y, left + pw, y, .grid)
            c.line(left - 4, y, left, y, .black)
            let s = Figure.label(v, step: ystep)
            c.text(s, x: left - 7 - Canvas.textWidth(s), y: y - 3)
        }
        if let cats = categories {
            for (i, name) in cats.enumerated() {
                let x = px(Double(i))
                c.line(x, top + ph, x, top + ph + 4, .black)
                let s = name.count > 14 ? String(name.prefix(13)) + "." : name
                c.text(s, x: x - Canvas.textWidth(s) / 2, y: top + ph + 8)
            }
        } else {
            let xt = Figure.ticks(xlo, xhi)
            let xstep = xt.count > 1 ? xt[1] - xt[0] : 1
            for v in xt {
                let x = px(v)
                c.line(x, top, x, top + ph, .grid)
                c.line(x, top + ph, x, top + ph + 4, .black)
                let s = Figure.label(v, step: xstep)
                c.text(s, x: x - Canvas.textWidth(s) / 2, y: top + ph + 8)
            }
        }
        // Data.
        for (si, s) in series.enumerated() {
            let col = Canvas.RGB.palette[si % Canvas.RGB.palette.count]
            if bars {
                let groupW = Double(pw) / Double(max(1, categories?.count ?? s.x.count))
                let bw = max(2, Int(groupW * 0.8 / Double(series.count)))
                for (i, x) in s.x.enumerated() where s.y[i].isFinite {
                    let x0 = px(x) - Int(groupW * 0.4) + si * bw
                    let y0 = py(max(0, s.y[i]))
                    let y1 = py(min(0, s.y[i]))
                    c.fill(x: x0, y: y0, w: bw - 1, h: max(1, y1 - y0), col)
                    if let e = s.err?[i], e > 0 {
                        let cx = x0 + bw / 2
                        c.line(cx, py(s.y[i] - e), cx, py(s.y[i] + e), .black)
                        c.line(cx - 2, py(s.y[i] - e), cx + 2, py(s.y[i] - e), .black)
                        c.line(cx - 2, py(s.y[i] + e), cx + 2, py(s.y[i] + e), .black)
                    }
                }
            } else {
                let pts = s.x.indices.filter { s.y[$0].isFinite }.map { (px(s.x[$0]), py(s.y[$0]), $0) }
                for (a, b) in zip(pts, pts.dropFirst()) { c.line(a.0, a.1, b.0, b.1, col, thickness: 2) }
                for p in pts {
                    c.fill(x: p.0 - 2, y: p.1 - 2, w: 5, h: 5, col)
                    if let e = s.err?[p.2], e > 0 {
                        c.line(p.0, py(s.y[p.2] - e), p.0, py(s.y[p.2] + e), col)
                        c.line(p.0 - 3, py(s.y[p.2] - e), p.0 + 3, py(s.y[p.2] - e), col)
                        c.line(p.0 - 3, py(s.y[p.2] + e), p.0 + 3, py(s.y[p.2] + e), col)
                    }
                }
            }
        }
        if bars && ylo < 0 { c.line(left, py(0), left + pw, py(0), .gray) }
        // Axes, title, labels, legend.
        c.line(left, top, left, top + ph, .black)
        c.line(left, top + ph, left + pw, top + ph, .black)
        c.text(title, x: (width - Canvas.textWidth(title, scale: 2)) / 2, y: 8, scale: 2)
        c.text(xLabel, x: left + (pw - Canvas.textWidth(xLabel)) / 2, y: top + ph + 24)
        c.text(yLabel, x: 8, y: top + (ph + Canvas.textWidth(yLabel)) / 2, vertical: true)
        for (si, s) in series.enumerated() where si < legendAt.count {
            let col = Canvas.RGB.palette[si % Canvas.RGB.palette.count]
            let (x, y) = (legendAt[si].x, height - legendH - 2 + 14 * legendAt[si].row)
            c.fill(x: x, y: y + 1, w: 14, h: 5, col)
            c.text(s.name, x: x + 18, y: y)
        }
        return c
    }
}
