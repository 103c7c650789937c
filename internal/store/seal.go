package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// sealer encrypts config values at rest with AES-256-GCM.
type sealer struct{ aead cipher.AEAD }

func newSealer(keyPath string) (*sealer, error) {
	key, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("generate config key: %w", err)
		}
		f, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create config key %s: %w", keyPath, err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, fmt.Errorf("write config key %s: %w", keyPath, err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("write config key %s: %w", keyPath, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read config key %s: %w", keyPath, err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("config key %s: want 32 bytes, found %d", keyPath, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("config key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("config key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal encrypts plain; additional binds the ciphertext to what it is (the
// config key name, "release-env"…) so a value cannot pass for another kind.
// It does not name the app, so rows survive apps:rename.
func (s *sealer) seal(plain []byte, additional string) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return s.aead.Seal(nonce, nonce, plain, []byte(additional))
}

func (s *sealer) open(sealed []byte, additional string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed value too short")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(additional))
	if err != nil {
		return nil, fmt.Errorf("decrypt config value (wrong config key?): %w", err)
	}
	return plain, nil
}
