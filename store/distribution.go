package store

// DistributionStore is the part of the store that passive distribution
// uses: partner code imports and grant jobs. It is embedded in Store.
type DistributionStore interface {
}
