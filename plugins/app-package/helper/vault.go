package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// The ansible-vault format, versions 1.1 and 1.2 (AES256):
//
//	$ANSIBLE_VAULT;1.1;AES256            (1.2 adds ";VAULT_ID")
//	hex(hex(salt) "\n" hex(hmac) "\n" hex(ciphertext)), in lines of 80
//
// Keys: PBKDF2-HMAC-SHA256(password, salt, 10000 iterations, 80 bytes) →
// AES key [0:32], HMAC key [32:64], CTR IV [64:80]. The plaintext is
// PKCS#7-padded to 16 bytes, encrypted with AES-256-CTR, and the HMAC-SHA256
// of the ciphertext is checked before anything is decrypted.

const (
	vaultHeader     = "$ANSIBLE_VAULT;"
	vaultIterations = 10000
	vaultSaltLen    = 32
)

// errWrongPassword is a vault that does not open with the password given.
var errWrongPassword = errors.New("wrong vault password (the HMAC does not match)")

// isVault reports whether data starts with an ansible-vault header.
func isVault(data []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte(vaultHeader))
}

// decryptVault opens an ansible-vault 1.1 or 1.2 AES256 file.
func decryptVault(data []byte, password []byte) ([]byte, error) {
	text := strings.TrimSpace(string(data))
	header, body, ok := strings.Cut(text, "\n")
	if !ok {
		return nil, errors.New("not an ansible-vault file: no content after the header")
	}
	fields := strings.Split(strings.TrimSpace(header), ";")
	if len(fields) < 3 || fields[0] != "$ANSIBLE_VAULT" {
		return nil, errors.New("not an ansible-vault file: bad header")
	}
	switch fields[1] {
	case "1.1", "1.2":
	default:
		return nil, fmt.Errorf("unsupported ansible-vault version %s (1.1 and 1.2 are supported)", fields[1])
	}
	if strings.TrimSpace(fields[2]) != "AES256" {
		return nil, fmt.Errorf("unsupported ansible-vault cipher %s (AES256 is supported)", fields[2])
	}
	hexBody := strings.Join(strings.Fields(body), "")
	inner, err := hex.DecodeString(hexBody)
	if err != nil {
		return nil, errors.New("corrupt ansible-vault file: the body is not hexadecimal")
	}
	parts := strings.Split(strings.TrimSpace(string(inner)), "\n")
	if len(parts) != 3 {
		return nil, errors.New("corrupt ansible-vault file: expected salt, HMAC and ciphertext")
	}
	salt, err1 := hex.DecodeString(parts[0])
	mac, err2 := hex.DecodeString(parts[1])
	ct, err3 := hex.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || len(mac) != sha256.Size {
		return nil, errors.New("corrupt ansible-vault file: bad salt, HMAC or ciphertext")
	}
	aesKey, macKey, iv := vaultKeys(password, salt)
	h := hmac.New(sha256.New, macKey)
	h.Write(ct)
	if !hmac.Equal(h.Sum(nil), mac) {
		return nil, errWrongPassword
	}
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		return nil, err
	}
	plain := make([]byte, len(ct))
	cipher.NewCTR(block, iv).XORKeyStream(plain, ct)
	return unpad(plain)
}

// encryptVault writes plain as an ansible-vault 1.1 AES256 file.
func encryptVault(plain, password []byte) ([]byte, error) {
	salt := make([]byte, vaultSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	return encryptVaultWithSalt(plain, password, salt)
}

func encryptVaultWithSalt(plain, password, salt []byte) ([]byte, error) {
	aesKey, macKey, iv := vaultKeys(password, salt)
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		return nil, err
	}
	padded := pad(plain)
	ct := make([]byte, len(padded))
	cipher.NewCTR(block, iv).XORKeyStream(ct, padded)
	h := hmac.New(sha256.New, macKey)
	h.Write(ct)
	inner := hex.EncodeToString(salt) + "\n" + hex.EncodeToString(h.Sum(nil)) + "\n" + hex.EncodeToString(ct)
	outer := hex.EncodeToString([]byte(inner))
	var b strings.Builder
	b.WriteString("$ANSIBLE_VAULT;1.1;AES256\n")
	for len(outer) > 80 {
		b.WriteString(outer[:80] + "\n")
		outer = outer[80:]
	}
	b.WriteString(outer + "\n")
	return []byte(b.String()), nil
}

func vaultKeys(password, salt []byte) (aesKey, macKey, iv []byte) {
	k := pbkdf2(sha256.New, password, salt, vaultIterations, 80)
	return k[:32], k[32:64], k[64:80]
}

func pad(b []byte) []byte {
	n := aes.BlockSize - len(b)%aes.BlockSize
	return append(append([]byte{}, b...), bytes.Repeat([]byte{byte(n)}, n)...)
}

func unpad(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return b, nil
	}
	n := int(b[len(b)-1])
	if n == 0 || n > aes.BlockSize || n > len(b) {
		return nil, errors.New("corrupt ansible-vault file: bad padding")
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, errors.New("corrupt ansible-vault file: bad padding")
		}
	}
	return b[:len(b)-n], nil
}

// pbkdf2 is PBKDF2 (RFC 8018) with HMAC of h; written here so the helper
// builds with any Go release and only the standard library.
func pbkdf2(h func() hash.Hash, password, salt []byte, iter, keyLen int) []byte {
	prf := hmac.New(h, password)
	hashLen := prf.Size()
	blocks := (keyLen + hashLen - 1) / hashLen
	out := make([]byte, 0, blocks*hashLen)
	buf := make([]byte, 4)
	u := make([]byte, hashLen)
	for block := 1; block <= blocks; block++ {
		prf.Reset()
		prf.Write(salt)
		buf[0], buf[1], buf[2], buf[3] = byte(block>>24), byte(block>>16), byte(block>>8), byte(block)
		prf.Write(buf)
		t := prf.Sum(nil)
		copy(u, t)
		for i := 1; i < iter; i++ {
			prf.Reset()
			prf.Write(u)
			u = prf.Sum(u[:0])
			for j := range t {
				t[j] ^= u[j]
			}
		}
		out = append(out, t...)
	}
	return out[:keyLen]
}
