import protobuf from 'protobufjs';

/** The wire type each field type must arrive with (proto3 encoding). */
const WIRE_TYPE: Record<string, number> = {
  double: 1,
  fixed64: 1,
  sfixed64: 1,
  float: 5,
  fixed32: 5,
  sfixed32: 5,
  int32: 0,
  int64: 0,
  uint32: 0,
  uint64: 0,
  sint32: 0,
  sint64: 0,
  bool: 0,
  string: 2,
  bytes: 2,
};

/** What `checkWire` found in a message's bytes. */
export type WireVerdict = { ok: true } | { ok: false; tooMany?: string };
const OK: WireVerdict = { ok: true };
const MISMATCH: WireVerdict = { ok: false };

/**
 * Whether every known field of `bytes` arrives with its type's wire type (nested messages included),
 * and no repeated message field holds more than `maxRepeated` entries in one message. protobufjs
 * checks neither: a number sent where a string is declared would be read as a length and silently
 * turn the bytes after it into other fields, where a strict decoder refuses the message; and a
 * repeated message field is decoded whole, an object of every field per entry (about 80 bytes of
 * heap for two bytes of wire), before any handler could count it. Walking the tags decodes no field.
 * (Repeated numbers are not counted: packed or not, one decodes to one number, no amplification.)
 */
export function checkWire(type: protobuf.Type, bytes: Uint8Array, maxRepeated = Infinity, depth = 0): WireVerdict {
  if (depth > 8) return MISMATCH;
  const reader = protobuf.Reader.create(bytes);
  // Entries per repeated message field, made only when a message has one (not on a check's or deduct's path).
  let entries: Map<number, number> | undefined;
  try {
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      const wireType = tag & 7;
      const field = type.fieldsById[tag >>> 3];
      if (field) {
        field.resolve();
        const nested = field.resolvedType instanceof protobuf.Type ? field.resolvedType : null;
        const expected = nested ? 2 : field.resolvedType instanceof protobuf.Enum ? 0 : WIRE_TYPE[field.type];
        // A repeated number may come packed (length-delimited).
        const packed = field.repeated && !nested && expected !== 2 && wireType === 2;
        if (wireType !== expected && !packed) return MISMATCH;
        if (field.repeated && nested) {
          entries ??= new Map();
          const count = (entries.get(field.id) ?? 0) + 1;
          if (count > maxRepeated) return { ok: false, tooMany: field.name };
          entries.set(field.id, count);
        }
        if (nested) {
          const verdict = checkWire(nested, reader.bytes(), maxRepeated, depth + 1);
          if (!verdict.ok) return verdict;
          continue;
        }
      }
      reader.skipType(wireType);
    }
  } catch {
    return MISMATCH;
  }
  return OK;
}
