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
//	[-format jws|cose] [-expiry 1h] [-signing-time RFC3339] [-claim-digest sha256:...]
//
// or, for unit-test fixtures, without a registry (the envelope is written to FILE):
//
//	notation-signer -out FILE -digest sha256:... -size N -media-type TYPE -key ... -cert ...
//
// -signing-time signs as if at that time (notation-go checks the chain at the signing
// time, so a certificate that has expired since can only sign in the past).
package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/notaryproject/notation-core-go/signature"
	_ "github.com/notaryproject/notation-core-go/signature/cose"
	_ "github.com/notaryproject/notation-core-go/signature/jws"
	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
)

func main() {
	ref := flag.String("ref", "", "image reference HOST:PORT/REPO:TAG or HOST:PORT/REPO@DIGEST")
	keyPath := flag.String("key", "", "PEM private key (PKCS#8, PKCS#1 or SEC1)")
	certPath := flag.String("cert", "", "PEM certificate chain, leaf first, ending with the root")
	format := flag.String("format", "jws", "envelope format: jws or cose")
	expiry := flag.Duration("expiry", 0, "signature expiry duration (0: none)")
	at := flag.String("signing-time", "", "RFC 3339 signing time (default: now)")
	flag.StringVar(&claim, "claim-digest", "", "sign this digest instead of the target's (negative tests)")
	out := flag.String("out", "", "write the envelope for -digest/-size/-media-type to this file")
	dgst := flag.String("digest", "", "fixture mode: the target's digest")
	size := flag.Int64("size", 0, "fixture mode: the target's size")
	mt := flag.String("media-type", ocispec.MediaTypeImageManifest, "fixture mode: the target's media type")
	flag.Parse()
	signingTime := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			fmt.Fprintln(os.Stderr, "notation-signer: -signing-time:", err)
			os.Exit(2)
		}
		signingTime = t
	}
	var err error
	if *out != "" {
		err = fixture(*out, ocispec.Descriptor{MediaType: *mt, Digest: digest.Digest(*dgst), Size: *size}, *keyPath, *certPath, *format, *expiry, signingTime)
	} else {
		err = run(*ref, *keyPath, *certPath, *format, *expiry, signingTime)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "notation-signer:", err)
		os.Exit(1)
	}
}

var claim string

// timedSigner is notation-go's GenericSigner with a chosen signing time.
type timedSigner struct {
	signer signature.Signer
	at     time.Time
	// claim, when set, replaces the target's digest in the signed payload (a signature
	// that does not match the manifest it is attached to, for negative tests).
	claim digest.Digest
}

func (s *timedSigner) Sign(ctx context.Context, desc ocispec.Descriptor, opts notation.SignerSignOptions) ([]byte, *signature.SignerInfo, error) {
	target := ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size, Annotations: desc.Annotations}
	if s.claim != "" {
		target.Digest = s.claim
	}
	payload, err := json.Marshal(struct {
		TargetArtifact ocispec.Descriptor `json:"targetArtifact"`
	}{target})
	if err != nil {
		return nil, nil, err
	}
	req := &signature.SignRequest{
		Payload:       signature.Payload{ContentType: "application/vnd.cncf.notary.payload.v1+json", Content: payload},
		Signer:        s.signer,
		SigningTime:   s.at,
		SigningScheme: signature.SigningSchemeX509,
		SigningAgent:  opts.SigningAgent,
	}
	if opts.ExpiryDuration != 0 {
		req.Expiry = s.at.Add(opts.ExpiryDuration)
	}
	env, err := signature.NewEnvelope(opts.SignatureMediaType)
	if err != nil {
		return nil, nil, err
	}
	sig, err := env.Sign(req.WithContext(ctx))
	if err != nil {
		return nil, nil, err
	}
	content, err := env.Verify()
	if err != nil {
		return nil, nil, fmt.Errorf("generated signature failed verification: %v", err)
	}
	return sig, &content.SignerInfo, nil
}

func newSigner(keyPath, certPath, format string, at time.Time) (*timedSigner, string, error) {
	if keyPath == "" || certPath == "" {
		return nil, "", fmt.Errorf("-key and -cert are required")
	}
	mediaType := map[string]string{"jws": "application/jose+json", "cose": "application/cose"}[format]
	if mediaType == "" {
		return nil, "", fmt.Errorf("unknown envelope format %q (jws or cose)", format)
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, "", err
	}
	chain, err := readCerts(certPath)
	if err != nil {
		return nil, "", err
	}
	ls, err := signature.NewLocalSigner(chain, key)
	if err != nil {
		return nil, "", fmt.Errorf("signer: %w", err)
	}
	return &timedSigner{signer: ls, at: at, claim: digest.Digest(claim)}, mediaType, nil
}

func fixture(out string, desc ocispec.Descriptor, keyPath, certPath, format string, expiry time.Duration, at time.Time) error {
	s, mediaType, err := newSigner(keyPath, certPath, format, at)
	if err != nil {
		return err
	}
	sig, _, err := s.Sign(context.Background(), desc, notation.SignerSignOptions{
		SignatureMediaType: mediaType,
		ExpiryDuration:     expiry,
		SigningAgent:       "leda-cm-tests/notation-signer",
	})
	if err != nil {
		return err
	}
	return os.WriteFile(out, sig, 0o644)
}

func run(ref, keyPath, certPath, format string, expiry time.Duration, at time.Time) error {
	if ref == "" {
		return fmt.Errorf("-ref (or -out) is required")
	}
	s, mediaType, err := newSigner(keyPath, certPath, format, at)
	if err != nil {
		return err
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
