// Shared by every template: the gateway assertion verifier, configured from the environment as a
// function is on its platform. portcullis/verify is the module the gateway ships for functions.
import { createAssertionVerifier } from 'portcullis/verify'

export { AssertionError } from 'portcullis/verify'

function required (name) {
  const value = process.env[name]
  if (value === undefined || value === '') throw new Error(`${name} is not set (see docs/functions/templates.md)`)
  return value
}

const jwks = required('PORTCULLIS_JWKS')

export const verifier = createAssertionVerifier({
  issuer: required('PORTCULLIS_ASSERTION_ISSUER'), // the gateway's assertion.issuer
  audience: required('FUNCTION_AUDIENCE'), // this function's URL, as the gateway's upstream names it
  // The gateway's JWKS: its admin listener's /.well-known/jwks.json, or the file of assertion.jwksFile.
  jwks: /^https?:\/\//.test(jwks) ? jwks : { file: jwks }
})
