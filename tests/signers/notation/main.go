// Signs an image in an OCI registry the way `notation sign` does, for leda-cm's
// integration tests (tests/trust_notation.rs): the Notary Project's notation-go library
// with a local key and certificate chain, a JWS or COSE envelope, the signature pushed as
// a referrer of the image's manifest. The registry is spoken to over plain HTTP (the test
// registry listens on loopback) and the referrers API is not used: the signature manifest
// is listed in the `sha256-<hex>` tag (the referrers tag schema), which is what a registry
// without the referrers API (distribution 2.8) needs.
//
// Usage: notation-signer -ref HOST:PORT/REPO:TAG -key KEY.pem -cert CHAIN.pem
//
//	[-format jws|cose] [-expiry 1h]
package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"time"

	_ "github.com/notaryproject/notation-core-go/signature/cose"
	_ "github.com/notaryproject/notation-core-go/signature/jws"
	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/registry"
	"github.com/notaryproject/notation-go/signer"
	"oras.land/oras-go/v2/registry/remote"
)

func main() {
	ref := flag.String("ref", "", "image reference HOST:PORT/REPO:TAG or HOST:PORT/REPO@DIGEST")
	keyPath := flag.String("key", "", "PEM private key (PKCS#8, PKCS#1 or SEC1)")
	certPath := flag.String("cert", "", "PEM certificate chain, leaf first, ending with the root")
	format := flag.String("format", "jws", "envelope format: jws or cose")
	expiry := flag.Duration("expiry", 0, "signature expiry duration (0: none)")
	flag.Parse()
	if err := run(*ref, *keyPath, *certPath, *format, *expiry); err != nil {
		fmt.Fprintln(os.Stderr, "notation-signer:", err)
		os.Exit(1)
	}
}

func run(ref, keyPath, certPath, format string, expiry time.Duration) error {
	if ref == "" || keyPath == "" || certPath == "" {
		return fmt.Errorf("-ref, -key and -cert are required")
	}
	mediaType := map[string]string{"jws": "application/jose+json", "cose": "application/cose"}[format]
	if mediaType == "" {
		return fmt.Errorf("unknown envelope format %q (jws or cose)", format)
	}
	key, err := readKey(keyPath)
	if err != nil {
		return err
	}
	chain, err := readCerts(certPath)
	if err != nil {
		return err
	}
	s, err := signer.NewGenericSigner(key, chain)
	if err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	remoteRepo, err := remote.NewRepository(ref)
	if err != nil {
		return fmt.Errorf("reference %q: %w", ref, err)
	}
	remoteRepo.PlainHTTP = true
	// No referrers API: list the signature in the referrers tag (sha256-<hex>).
	if err := remoteRepo.SetReferrersCapability(false); err != nil {
		return err
	}
	desc, err := notation.Sign(context.Background(), s, registry.NewRepository(remoteRepo), notation.SignOptions{
		SignerSignOptions: notation.SignerSignOptions{
			SignatureMediaType: mediaType,
			ExpiryDuration:     expiry,
			SigningAgent:       "leda-cm-tests/notation-signer",
		},
		ArtifactReference: ref,
	})
	if err != nil {
		return fmt.Errorf("sign %s: %w", ref, err)
	}
	fmt.Println(desc.Digest.String())
	return nil
}

func readKey(path string) (crypto.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("%s: not a PKCS#8, PKCS#1 or SEC1 private key", path)
}

func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return certs, nil
}
