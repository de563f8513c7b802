/**
 * `X-Ferry-Sha256`: Ferry's response header carrying the sha256 (lowercase hex) of a stored
 * file, on ImageStore's CommitUploadSession and whole-file PUT and on the tus HEAD of a finished
 * upload. Neither protocol has a way to tell a client what was stored; `ferry upload` compares
 * it with the digest it computed while reading the file. (RFC 9530's `Repr-Digest` was
 * considered: it describes the response's own representation, which a commit's empty 200 is not.)
 */
export const SHA256_HEADER = 'X-Ferry-Sha256'
