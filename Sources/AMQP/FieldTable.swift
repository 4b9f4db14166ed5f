import CRabbitMQ
import Foundation

/// A value in an AMQP field table: message headers and queue/exchange arguments.
public enum HeaderValue: Sendable, Hashable {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case double(Double)
    case bytes([UInt8])
    case timestamp(UInt64)
    case table([String: HeaderValue])
    case array([HeaderValue])
    case void

    public var stringValue: String? {
        switch self {
        case .string(let s): s
        case .bytes(let b): String(decoding: b, as: UTF8.self)
        default: nil
        }
    }

    public var intValue: Int64? {
        if case .int(let i) = self { return i }
        return nil
    }
}

/// Owns the C memory that a call into librabbitmq borrows (strings, tables), and frees it
/// when the call is done. One arena per call; never shared across threads.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit {
        for block in blocks { free(block) }
    }

    private func allocate(_ size: Int) -> UnsafeMutableRawPointer {
        let block = malloc(max(size, 1))!
        blocks.append(block)
        return block
    }

    func bytes(_ text: String) -> amqp_bytes_t {
        bytes(Array(text.utf8))
    }

    func bytes(_ data: [UInt8]) -> amqp_bytes_t {
        let block = allocate(data.count)
        data.withUnsafeBytes { source in
            if let base = source.baseAddress { block.copyMemory(from: base, byteCount: data.count) }
        }
        return amqp_bytes_t(len: data.count, bytes: block)
    }

    func table(_ entries: [String: HeaderValue]) -> amqp_table_t {
        guard !entries.isEmpty else { return amqp_table_t(num_entries: 0, entries: nil) }
        let storage = allocate(MemoryLayout<amqp_table_entry_t>.stride * entries.count)
            .bindMemory(to: amqp_table_entry_t.self, capacity: entries.count)
        // Sorted so that the same table always encodes to the same bytes.
        for (i, (key, value)) in entries.sorted(by: { $0.key < $1.key }).enumerated() {
            storage[i] = amqp_table_entry_t(key: bytes(key), value: field(value))
        }
        return amqp_table_t(num_entries: Int32(entries.count), entries: storage)
    }

    func field(_ value: HeaderValue) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        switch value {
        case .string(let s):
            field.kind = UInt8(ascii: "S"); field.value.bytes = bytes(s)
        case .int(let i):
            field.kind = UInt8(ascii: "l"); field.value.i64 = i
        case .bool(let b):
            field.kind = UInt8(ascii: "t"); field.value.boolean = b ? 1 : 0
        case .double(let d):
            field.kind = UInt8(ascii: "d"); field.value.f64 = d
        case .bytes(let b):
            field.kind = UInt8(ascii: "x"); field.value.bytes = bytes(b)
        case .timestamp(let t):
            field.kind = UInt8(ascii: "T"); field.value.u64 = t
        case .table(let t):
            field.kind = UInt8(ascii: "F"); field.value.table = table(t)
        case .array(let items):
            field.kind = UInt8(ascii: "A")
            let storage = allocate(MemoryLayout<amqp_field_value_t>.stride * max(items.count, 1))
                .bindMemory(to: amqp_field_value_t.self, capacity: max(items.count, 1))
            for (i, item) in items.enumerated() { storage[i] = self.field(item) }
            field.value.array = amqp_array_t(num_entries: Int32(items.count), entries: items.isEmpty ? nil : storage)
        case .void:
            field.kind = UInt8(ascii: "V")
        }
        return field
    }
}

/// Copies out of librabbitmq's buffers, which are reused on the next read.
enum CCopy {
    static func string(_ bytes: amqp_bytes_t) -> String {
        guard bytes.len > 0, let base = bytes.bytes else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: base, count: bytes.len), as: UTF8.self)
    }

    static func array(_ bytes: amqp_bytes_t) -> [UInt8] {
        guard bytes.len > 0, let base = bytes.bytes else { return [] }
        return Array(UnsafeRawBufferPointer(start: base, count: bytes.len))
    }

    static func table(_ table: amqp_table_t) -> [String: HeaderValue] {
        var result: [String: HeaderValue] = [:]
        guard table.num_entries > 0, let entries = table.entries else { return result }
        for i in 0..<Int(table.num_entries) {
            result[string(entries[i].key)] = value(entries[i].value)
        }
        return result
    }

    static func value(_ field: amqp_field_value_t) -> HeaderValue {
        switch field.kind {
        case UInt8(ascii: "S"): .string(string(field.value.bytes))
        case UInt8(ascii: "x"): .bytes(array(field.value.bytes))
        case UInt8(ascii: "t"): .bool(field.value.boolean != 0)
        case UInt8(ascii: "b"): .int(Int64(field.value.i8))
        case UInt8(ascii: "B"): .int(Int64(field.value.u8))
        case UInt8(ascii: "s"): .int(Int64(field.value.i16))
        case UInt8(ascii: "u"): .int(Int64(field.value.u16))
        case UInt8(ascii: "I"): .int(Int64(field.value.i32))
        case UInt8(ascii: "i"): .int(Int64(field.value.u32))
        case UInt8(ascii: "l"): .int(field.value.i64)
        case UInt8(ascii: "L"): .int(Int64(truncatingIfNeeded: field.value.u64))
        case UInt8(ascii: "f"): .double(Double(field.value.f32))
        case UInt8(ascii: "d"): .double(field.value.f64)
        case UInt8(ascii: "T"): .timestamp(field.value.u64)
        case UInt8(ascii: "F"): .table(table(field.value.table))
        case UInt8(ascii: "A"):
            .array((0..<Int(field.value.array.num_entries)).map { value(field.value.array.entries[$0]) })
        default: .void
        }
    }
}
