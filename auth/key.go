package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"
)

// Key is an API key: a credential with a role (and a merchant for the
// merchant role). Its secret is never stored: the store keeps a random salt,
// from which a Keyring derives the secret with the server's key secret, and
// the secret's SHA-256, which a bearer token is checked against. So a copy
// of the database alone lets nobody sign or present a key.
type Key struct {
	ID         string
	Name       string
	Role       Role
	MerchantID string
	Salt       string
	SecretHash string
	// The secret before the last rotation stays valid until
	// PreviousExpiresAt, so that clients can switch without downtime.
	PreviousSalt       string
	PreviousSecretHash string
	PreviousExpiresAt  time.Time
	CreatedAt          time.Time
	RotatedAt          time.Time // zero: never rotated
	RevokedAt          time.Time // zero: live
}

// Revoked reports whether the key was revoked.
func (k *Key) Revoked() bool { return !k.RevokedAt.IsZero() }

// Principal is who the key authenticates.
func (k *Key) Principal() Principal {
	p := Principal{KeyID: k.ID, Role: k.Role}
	if k.Role == Merchant {
		p.MerchantID = k.MerchantID
	}
	return p
}

// Keyring derives the secrets of API keys from the server's key secret.
type Keyring struct {
	master []byte
}

// NewKeyring returns a keyring on master, the server's key secret. Every
// instance of a deployment must share it: a key's secret is derived from
// it, so changing it invalidates every key.
func NewKeyring(master []byte) *Keyring {
	return &Keyring{master: append([]byte(nil), master...)}
}

// NewSalt returns a fresh random salt.
func NewSalt() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// Secret is the secret of key id with salt: HMAC-SHA256 of the key secret
// over the id and the salt, 43 characters of base64url.
func (r *Keyring) Secret(id, salt string) string {
	m := hmac.New(sha256.New, r.master)
	m.Write([]byte("coupond api key\x00"))
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write([]byte(salt))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// HashSecret is what the store keeps of a secret: its SHA-256 in hex. A
// secret is 256 random bits, so no salt or slow hash is needed.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// SameHash compares two hashes in constant time.
func SameHash(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// Token is the bearer token of a key: its id, a dot, its secret.
func Token(id, secret string) string { return id + "." + secret }

// ParseToken splits a bearer token into key id and secret; ok is false for
// anything that cannot be an API key's token.
func ParseToken(token string) (id, secret string, ok bool) {
	id, secret, ok = strings.Cut(token, ".")
	if !ok || !ValidKeyID(id) || len(secret) != 43 {
		return "", "", false
	}
	return id, secret, true
}

// ValidKeyID reports whether s is shaped like a key id: 1 to 64 letters and
// digits.
func ValidKeyID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}
