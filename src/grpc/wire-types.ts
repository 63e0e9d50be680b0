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

/**
 * True when every known field of `bytes` arrives with its type's wire type (nested messages
 * included). protobufjs does not check this: a number sent where a string is declared would be
 * read as a length and silently turn the bytes after it into other fields, where a strict decoder
 * refuses the message.
 */
export function wireTypesMatch(type: protobuf.Type, bytes: Uint8Array, depth = 0): boolean {
  if (depth > 8) return false;
  const reader = protobuf.Reader.create(bytes);
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
        if (wireType !== expected && !packed) return false;
        if (nested) {
          const sub = reader.bytes();
          if (!wireTypesMatch(nested, sub, depth + 1)) return false;
          continue;
        }
      }
      reader.skipType(wireType);
    }
  } catch {
    return false;
  }
  return true;
}
