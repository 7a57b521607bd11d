// Issue #21: the smuggling suite over HTTP/2 (test/helpers/h2-exchange.ts), with its own assertions.
process.env.PORTCULLIS_TEST_PROTOCOL = 'h2'
await import('./smuggling.test.js')
