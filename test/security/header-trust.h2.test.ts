// Issue #21: the header-trust suite over HTTP/2 (test/helpers/h2-exchange.ts), with its own assertions.
process.env.PORTCULLIS_TEST_PROTOCOL = 'h2'
await import('./header-trust.test.js')
