// docs/certificates.md's algorithm, written from the page alone with Node's X509Certificate and panva's jose, as a
// Timex developer would in another language. Usage: node verify.mjs CERTIFICATE_FILE ROOT_PEM INSTANT [CODE]
// Prints the claims (exit 0), or the reason it refuses (exit 1). Revocation lists, and the key usage extension (which
// Node does not expose), are left to the reference verifier.
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { compactVerify, decodeProtectedHeader } from "jose";

const [file, rootFile, instantText, code] = process.argv.slice(2);
const refuse = (reason) => {
  console.error(reason);
  process.exit(1);
};
const token = readFileSync(file, "utf8").trim();
const root = new X509Certificate(readFileSync(rootFile));
const instant = new Date(instantText);
const within = (certificate, when) =>
  new Date(certificate.validFrom) <= when && when <= new Date(certificate.validTo);

let header;
try {
  header = decodeProtectedHeader(token);
} catch {
  refuse("malformed");
}
if (header.alg !== "ES256" || "crit" in header) refuse("malformed");
if (!Array.isArray(header.x5c) || typeof header.x5c[0] !== "string") refuse("no_chain");
let key;
try {
  key = new X509Certificate(Buffer.from(header.x5c[0], "base64"));
} catch {
  refuse("no_chain");
}
if (key.issuer !== root.subject || !key.verify(root.publicKey)) refuse("untrusted_key");
if (!within(root, instant) || !within(key, instant)) refuse("key_certificate_expired");
if (key.ca || key.publicKey.asymmetricKeyDetails.namedCurve !== "prime256v1") refuse("key_not_for_signing");
let claims;
try {
  const { payload } = await compactVerify(token, key.publicKey, { algorithms: ["ES256"] });
  claims = JSON.parse(new TextDecoder().decode(payload));
} catch {
  refuse("bad_signature");
}
const issued = new Date(claims.iat * 1000);
if (issued > instant) refuse("not_yet_valid");
if (instant.getTime() >= claims.exp * 1000) refuse("expired");
if (!within(key, issued)) refuse("key_certificate_expired");
if (code !== undefined && claims.sub !== code.toUpperCase()) refuse("wrong_installation");
console.log(JSON.stringify(claims));
