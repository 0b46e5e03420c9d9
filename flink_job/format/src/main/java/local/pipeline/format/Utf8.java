package local.pipeline.format;

/**
 * Strict UTF-8 validation, as Java's decoder judges it: no overlong forms, no surrogates, nothing past U+10FFFF,
 * no truncated or stray continuation bytes. A record that fails here would not survive a decode and re-encode
 * byte for byte, so it is rejected as "invalid UTF-8" before any JSON parsing.
 */
final class Utf8 {

    static final int VALID = 0, INVALID = 1, HAS_NUL = 2;

    private Utf8() {}

    /** VALID, INVALID, or HAS_NUL (valid UTF-8 with a NUL byte, which JSON never allows). */
    static int check(byte[] b) {
        int result = VALID;
        int i = 0;
        int n = b.length;
        while (i < n) {
            int c = b[i];
            if (c > 0) {  // ASCII, the common case
                i++;
                continue;
            }
            if (c == 0) {
                result = HAS_NUL;
                i++;
                continue;
            }
            c &= 0xFF;
            int need;
            int min;
            if (c >= 0xC2 && c <= 0xDF) {
                need = 1;
                min = 0x80;
            } else if (c >= 0xE0 && c <= 0xEF) {
                need = 2;
                min = 0x800;
            } else if (c >= 0xF0 && c <= 0xF4) {
                need = 3;
                min = 0x10000;
            } else {
                return INVALID;  // continuation byte without a lead, C0/C1 (always overlong), F5..FF
            }
            if (i + need >= n) {
                return INVALID;  // truncated
            }
            int cp = c & (0x3F >> need);
            for (int k = 1; k <= need; k++) {
                int cont = b[i + k] & 0xFF;
                if ((cont & 0xC0) != 0x80) {
                    return INVALID;
                }
                cp = (cp << 6) | (cont & 0x3F);
            }
            if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
                return INVALID;
            }
            i += need + 1;
        }
        return result;
    }
}
