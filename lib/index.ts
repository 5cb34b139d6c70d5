// Public entry of the package (package.json "exports" → dist/lib/index.js): what a web calendar server
// or another tool may import. In: nothing at load time. Out: token verification and link helpers.
// Fails: importing it has no side effects; each function documents its own failures.

export { verifyToken, parseSecret, mintToken, DEFAULT_SCOPE } from './token.js';
export type { TokenClaims, VerifyExpect, VerifyFailure, VerifyResult, MintOptions } from './token.js';
export { buildLink, checkTemplate, checkServer, LinkError, PLACEHOLDERS, MAX_LINK_LENGTH } from './url-template.js';
export type { LinkValues, Placeholder } from './url-template.js';
