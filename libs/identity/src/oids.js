// Object identifiers used by X.509-SVIDs and PKCS#10 requests.
export const OID = {
    ecPublicKey: '1.2.840.10045.2.1',
    prime256v1: '1.2.840.10045.3.1.7',
    rsaEncryption: '1.2.840.113549.1.1.1',
    ecdsaWithSha256: '1.2.840.10045.4.3.2',
    sha256WithRsa: '1.2.840.113549.1.1.11',
    extensionRequest: '1.2.840.113549.1.9.14',
    commonName: '2.5.4.3',
    organization: '2.5.4.10',
    organizationalUnit: '2.5.4.11',
    subjectKeyIdentifier: '2.5.29.14',
    keyUsage: '2.5.29.15',
    subjectAltName: '2.5.29.17',
    basicConstraints: '2.5.29.19',
    nameConstraints: '2.5.29.30',
    authorityKeyIdentifier: '2.5.29.35',
    extKeyUsage: '2.5.29.37',
    serverAuth: '1.3.6.1.5.5.7.3.1',
    clientAuth: '1.3.6.1.5.5.7.3.2',
};
/** keyUsage bit positions (RFC 5280 §4.2.1.3). */
export const KeyUsageBit = {
    digitalSignature: 0,
    nonRepudiation: 1,
    keyEncipherment: 2,
    dataEncipherment: 3,
    keyAgreement: 4,
    keyCertSign: 5,
    cRLSign: 6,
    encipherOnly: 7,
    decipherOnly: 8,
};
//# sourceMappingURL=oids.js.map