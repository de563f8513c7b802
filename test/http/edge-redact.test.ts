/** The redaction helpers every log line and start-up message goes through (issue 17 item 11). */
import { describe, expect, test } from '@jest/globals'
import { maskUrl, maskUrlsIn, redactUrl } from '../../src/observability/index.js'

describe('redactUrl: request targets for log lines', () => {
  test.each([
    ['/a/b', '/a/b'],
    [
      '/p?X-Ferry-Expires=17&X-Ferry-Signature=abc',
      '/p?X-Ferry-Expires=17&X-Ferry-Signature=[REDACTED]',
    ],
    [
      '/p?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=f00&X-Amz-Security-Token=t',
      '/p?X-Amz-Credential=[REDACTED]&X-Amz-Signature=[REDACTED]&X-Amz-Security-Token=[REDACTED]',
    ],
    [
      '/p?sig=1&token=2&access_token=3&password=4&apikey=5&code=6',
      '/p?sig=[REDACTED]&token=[REDACTED]&access_token=[REDACTED]&password=[REDACTED]&apikey=[REDACTED]&code=[REDACTED]',
    ],
    // Encoded names are recognised; names that cannot be decoded are redacted.
    ['/p?X%2DAmz%2DSignature=1&%ZZ=2', '/p?X%2DAmz%2DSignature=[REDACTED]&%ZZ=[REDACTED]'],
    // What is no credential stays readable.
    ['/ImageStore/a?api-version=6.0&session-id=0f', '/ImageStore/a?api-version=6.0&session-id=0f'],
    ['/x?path=a%2Fb&presign=true&flag', '/x?path=a%2Fb&presign=true&flag'],
  ])('%s', (input, out) => {
    expect(redactUrl(input)).toBe(out)
  })
})

describe('maskUrl / maskUrlsIn: passwords in connection URLs', () => {
  test.each([
    ['redis://:pw@h:6379/0', 'redis://:***@h:6379/0'],
    ['rediss://user:pw@h/1', 'rediss://user:***@h/1'],
    ['redis://:p@ss@h', 'redis://:***@h'],
    ['redis://h:6379', 'redis://h:6379'],
    ['redis://user@h', 'redis://user@h'],
  ])('%s', (input, out) => {
    expect(maskUrl(input)).toBe(out)
  })

  test('inside a message, with query credentials too', () => {
    expect(
      maskUrlsIn('Redis at redis://:s3cr3t@10.0.0.1:6379 failed; retry http://x/y?token=abc&n=1'),
    ).toBe('Redis at redis://:***@10.0.0.1:6379 failed; retry http://x/y?token=[REDACTED]&n=1')
  })
})
