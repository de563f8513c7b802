/** lakeFS staging requests as lakectl sends them (treeverse/lakeFS, api/swagger.yml). */

/** `StagingLocation` of the lakeFS API: where to PUT the bytes, then what to link. */
export interface StagingLocation {
  physical_address: string
  presigned_url: string | null
  presigned_url_expiry?: number
}

/** HTTP Basic credentials as lakeFS access keys use them. */
export const basicAuth = (accessKeyId: string, secret: string): string =>
  `Basic ${Buffer.from(`${accessKeyId}:${secret}`).toString('base64')}`

/** `…/staging/backing?path=` of one object (GET: an address, PUT: link); `query` starts with &. */
export function stagingBackingUrl(
  base: string,
  repo: string,
  branch: string,
  path: string,
  query = '',
): string {
  const branchUrl = `${base}/api/v1/repositories/${repo}/branches/${branch}`
  return `${branchUrl}/staging/backing?path=${encodeURIComponent(path)}${query}`
}
