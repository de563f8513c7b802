/** HS* bearer tokens for the families that take JWTs (Shaman, lakeFS staging, bulk ingest). */
import { SignJWT, type JWTPayload } from 'jose'

export interface JwtOptions {
  readonly secret: string
  /** Default HS256; tests of a refused algorithm pass another. */
  readonly alg?: string | undefined
  readonly iss?: string | undefined
  readonly aud?: string | string[] | undefined
  /** Seconds since the epoch; none when absent. */
  readonly iat?: number | undefined
  /** Seconds since the epoch or a jose duration such as '1h'; none when absent or null. */
  readonly exp?: number | string | null | undefined
}

/** Signs `claims` as a compact JWS, adding only the registered claims `o` names. */
export function signJwt(claims: JWTPayload, o: JwtOptions): Promise<string> {
  let b = new SignJWT(claims).setProtectedHeader({ alg: o.alg ?? 'HS256' })
  if (o.iss !== undefined) b = b.setIssuer(o.iss)
  if (o.aud !== undefined) b = b.setAudience(o.aud)
  if (o.iat !== undefined) b = b.setIssuedAt(o.iat)
  if (o.exp !== undefined && o.exp !== null) b = b.setExpirationTime(o.exp)
  return b.sign(new TextEncoder().encode(o.secret))
}

/** `signJwt` as an `Authorization` header value. */
export const bearer = async (claims: JWTPayload, o: JwtOptions): Promise<string> =>
  `Bearer ${await signJwt(claims, o)}`

/** Now, in the seconds JWT claims count in. */
export const nowSeconds = (): number => Math.floor(Date.now() / 1000)
