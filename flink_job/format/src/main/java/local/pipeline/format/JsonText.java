package local.pipeline.format;

/** Whitespace between the tokens of already-validated JSON text, found and removed without a parser. */
final class JsonText {

    private JsonText() {}

    /**
     * Points {@code out} at the JSON text {@code json[start, end)}: the bytes themselves when no whitespace
     * separates its tokens (the usual case: no copy), else a copy without that whitespace. Whitespace inside
     * strings is kept. The text must be valid JSON (the parser checked it).
     */
    static void compactSlice(byte[] json, int start, int end, ParsedEvent.Slice out) {
        int firstSpace = firstSpaceOutsideStrings(json, start, end);
        if (firstSpace < 0) {
            out.bytes = json;
            out.offset = start;
            out.length = end - start;
            return;
        }
        byte[] copy = new byte[end - start];
        int n = firstSpace - start;
        System.arraycopy(json, start, copy, 0, n);
        boolean inString = false;
        for (int i = firstSpace; i < end; i++) {
            byte b = json[i];
            if (inString) {
                copy[n++] = b;
                if (b == '\\') {
                    copy[n++] = json[++i];
                } else if (b == '"') {
                    inString = false;
                }
            } else if (!isSpace(b)) {
                copy[n++] = b;
                inString = b == '"';
            }
        }
        out.bytes = copy;
        out.offset = 0;
        out.length = n;
    }

    private static int firstSpaceOutsideStrings(byte[] json, int start, int end) {
        boolean inString = false;
        for (int i = start; i < end; i++) {
            byte b = json[i];
            if (inString) {
                if (b == '\\') {
                    i++;
                } else if (b == '"') {
                    inString = false;
                }
            } else if (b == '"') {
                inString = true;
            } else if (isSpace(b)) {
                return i;
            }
        }
        return -1;
    }

    private static boolean isSpace(byte b) {
        return b == ' ' || b == '\n' || b == '\r' || b == '\t';
    }
}
