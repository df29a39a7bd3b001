// PEM (RFC 7468) encoding and strict decoding. Decoding accepts only whole
// BEGIN/END blocks separated by whitespace: anything else (stray text, RFC
// 1421 headers such as encrypted-key "Proc-Type", mismatched labels, bad
// base64) is refused rather than skipped, so a truncated or spliced file
// never yields a partial result.
export class PemError extends Error {
    code = 'AMIME_ERR_IDENTITY_PEM';
    constructor(message) {
        super(message);
        this.name = 'PemError';
    }
}
const LINE = 64;
const BEGIN = /^-----BEGIN ([A-Z0-9]+(?: [A-Z0-9]+)*)-----$/;
const END = /^-----END ([A-Z0-9]+(?: [A-Z0-9]+)*)-----$/;
const BASE64_LINE = /^[A-Za-z0-9+/]*={0,2}$/;
// Whole body: groups of four, padding only at the very end.
const BASE64_BODY = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** One PEM block, lines of 64 characters, ending with a newline. */
export function toPem(label, der) {
    if (!BEGIN.test(`-----BEGIN ${label}-----`))
        throw new PemError(`bad PEM label ${JSON.stringify(label)}`);
    const b64 = der.toString('base64');
    let out = `-----BEGIN ${label}-----\n`;
    for (let i = 0; i < b64.length; i += LINE)
        out += `${b64.slice(i, i + LINE)}\n`;
    return `${out}-----END ${label}-----\n`;
}
/** Certificates as one PEM string, in the given order (leaf first for a chain). */
export function certsToPem(ders) {
    let out = '';
    for (const der of ders)
        out += toPem('CERTIFICATE', der);
    return out;
}
/**
 * Every block labelled `label`, decoded, in file order. Blocks with other
 * labels are skipped (a file may hold a key and its certificate); an empty
 * array means there was none. Throws PemError on anything that is not
 * well-formed PEM.
 */
export function fromPem(text, label) {
    if (typeof text !== 'string')
        throw new PemError('PEM input must be a string');
    const lines = text.split(/\r?\n/);
    const out = [];
    let open;
    for (let i = 0; i < lines.length; i++) {
        const line = lines[i];
        const where = `line ${i + 1}`;
        if (!open) {
            if (line.trim() === '')
                continue;
            const m = BEGIN.exec(line);
            if (!m)
                throw new PemError(`${where}: expected "-----BEGIN <label>-----", found ${describe(line)}`);
            open = { label: m[1], line: i + 1, body: [] };
            continue;
        }
        const end = END.exec(line);
        if (end) {
            if (end[1] !== open.label) {
                throw new PemError(`${where}: END label "${end[1]}" does not match BEGIN label "${open.label}" (line ${open.line})`);
            }
            const body = open.body.join('');
            if (body.length === 0 || !BASE64_BODY.test(body)) {
                throw new PemError(`${open.label} block at line ${open.line}: the body is not valid base64`);
            }
            if (open.label === label)
                out.push(Buffer.from(body, 'base64'));
            open = undefined;
            continue;
        }
        if (line.includes(':'))
            throw new PemError(`${where}: PEM headers (e.g. encrypted keys) are not supported`);
        if (!BASE64_LINE.test(line))
            throw new PemError(`${where}: not a base64 line: ${describe(line)}`);
        open.body.push(line);
    }
    if (open)
        throw new PemError(`${open.label} block at line ${open.line} has no END line (truncated?)`);
    return out;
}
/** Exactly one block of `label`; throws PemError naming what was found otherwise. */
export function fromPemSingle(text, label) {
    const blocks = fromPem(text, label);
    if (blocks.length !== 1)
        throw new PemError(`expected exactly one ${label} PEM block, found ${blocks.length}`);
    return blocks[0];
}
function describe(line) {
    const cut = line.length > 40 ? `${line.slice(0, 40)}...` : line;
    return JSON.stringify(cut).replace(/[^\x20-\x7e]/g, '?');
}
//# sourceMappingURL=pem.js.map