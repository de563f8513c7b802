/** lakeFS staging requests as lakectl and the SDKs build them (treeverse/lakeFS, api/swagger.yml). */

/** `StagingLocation` of the lakeFS API: where to PUT the bytes, then what to link. */
export interface StagingLocation {
  physical_address: string
  presigned_url: string | null
  presigned_url_expiry?: number
}

/** HTTP Basic credentials as lakeFS access keys use them. */
export const basicAuth = (accessKeyId: string, secret: string): string =>
  `Basic ${Buffer.from(`${accessKeyId}:${secret}`).toString('base64')}`

/** `GET` (address) and `PUT` (link) `…/staging/backing?path=` of one object; `query` starts with `&`. */
export const stagingBackingUrl = (base: string, repo: string, branch: string, path: string, query = ''): string =>
  `${base}/api/v1/repositories/${repo}/branches/${branch}/staging/backing?path=${encodeURIComponent(path)}${query}`
